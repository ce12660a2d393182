"""Run calls truly side by side: threads held at a `threading.Barrier` and released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def all_at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """`call(0)` … `call(count - 1)`, each in a thread of its own, released together; re-raises an error."""
    barrier = threading.Barrier(count)

    def released(i: int) -> T:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(released, range(count)))
