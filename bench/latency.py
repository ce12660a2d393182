"""`signed_up` → welcome email in the SMTP inbox: latency p50/p99 at a steady sign-up rate, on the embedded
default (`touchflow dev`: Temporal dev server, SQLite, worker and API in one process tree).

    .venv/bin/python -m bench.latency [--rate 20] [--seconds 30]

An aiosmtpd server on loopback stands in for the mail provider and stamps each message's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from bench.common import machine
from touchflow.temporal import free_port

KEY = "bench-key-1"


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.at.setdefault(rcpt, time.perf_counter())
        return "250 OK"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20.0, help="sign-ups per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    work = Path(tempfile.mkdtemp(prefix="touchflow-latency-"))
    arrivals = Arrivals()
    smtp_port = free_port()
    controller = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    ports = {name: free_port() for name in ("temporal", "ui", "api", "smtp")}
    env = dict(os.environ) | {
        "TOUCHFLOW_HOME": str(work / ".touchflow"),
        "TOUCHFLOW_API_KEYS": KEY,
        "TOUCHFLOW_SECRET_KEY": "bench-secret",
        "TOUCHFLOW_SMTP_HOST": "127.0.0.1",
        "TOUCHFLOW_SMTP_PORT": str(smtp_port),
        "TOUCHFLOW_LOG_LEVEL": "WARNING",
    }
    log = work / "dev.log"
    dev = subprocess.Popen(
        [sys.executable, "-m", "touchflow.cli", "dev", *(f"--{n}-port={p}" for n, p in ports.items())],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        while "Ctrl-C stops everything" not in log.read_text():
            if dev.poll() is not None:
                raise SystemExit(f"touchflow dev exited:\n{log.read_text()}")
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{ports['api']}"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            for i in range(count):
                await client.post("/v1/customers", json={"id": f"c{i}", "email": f"c{i}@example.com"})
            sent_at: dict[str, float] = {}

            async def signup(i: int) -> None:
                sent_at[f"c{i}@example.com"] = time.perf_counter()
                response = await client.post(
                    "/v1/events", json={"id": f"su-{i}", "customer_id": f"c{i}", "name": "signed_up"}
                )
                response.raise_for_status()

            tasks = []
            start = time.perf_counter()
            for i in range(count):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the load, not waiting for a result
                tasks.append(asyncio.create_task(signup(i)))
            await asyncio.gather(*tasks)
            deadline = time.perf_counter() + 120
            while len(arrivals.at) < count and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
        latencies = sorted(arrivals.at[r] - sent_at[r] for r in arrivals.at if r in sent_at)
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "rate_per_s": args.rate,
                    "signups": count,
                    "emails_received": len(latencies),
                    "p50_ms": round(statistics.median(latencies) * 1000),
                    "p95_ms": round(quantiles[94] * 1000),
                    "p99_ms": round(quantiles[98] * 1000),
                    "max_ms": round(latencies[-1] * 1000),
                },
                indent=2,
            )
        )
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
        controller.stop()


if __name__ == "__main__":
    asyncio.run(main())
