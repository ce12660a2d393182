"""Waiting for a condition with a deadline: the one way tests wait for something to happen elsewhere."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Return as soon as `condition()` holds (it may be a coroutine function); fail after `timeout` seconds,
    naming `what` was awaited. Checks every 20 ms: a poll with a deadline, not a sleep that hopes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
