"""Profiles of a benchmarked process with py-spy (a dev dependency): record one while it works, and read a
recording (`py-spy record --format raw`: one line per distinct stack, frames joined by `;`, then a count).

    .venv/bin/python -m bench.pyspy FILE [--top 25] [--match touchflow]

prints the share of samples in which each function is on the stack (inclusive) and at the top (self).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from touchflow.temporal import installed_binary


def record(pid: int, out: Path, seconds: int, rate: int = 50) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` into `out` for `seconds`."""
    command = [installed_binary("py-spy", "py-spy"), "record", "--format", "raw", "--pid", str(pid)]
    command += ["--output", str(out), "--duration", str(seconds), "--rate", str(rate), "--nonblocking"]
    # Only the thread holding the interpreter lock: what the worker spends its one interpreter on.
    command.append("--gil")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(text: str) -> str:
    # `function (path/to/module.py:123)` → `function (module.py)`: lines would split one function.
    return re.sub(r" \((?:.*/)?([^/:]+):\d+\)$", r" (\1)", text)


def aggregate(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total, inclusive, own = 0, Counter[str](), Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only functions whose frame contains this")
    args = parser.parse_args()
    total, inclusive, own = aggregate(args.file)
    if not total:
        sys.exit(f"no samples in {args.file}")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"{title} (% of {total} samples)")
        shown = [(f, c) for f, c in counter.most_common() if args.match in f][: args.top]
        for frame, n in shown:
            print(f"  {100 * n / total:5.1f}  {frame}")


if __name__ == "__main__":
    main()
