"""Waiting for a condition with a deadline: the one way tests wait for something to happen elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Return as soon as `condition()` holds; fail after `timeout` seconds, naming `what` was awaited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
