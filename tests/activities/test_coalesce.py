"""Coalesced: calls that arrive together are made together, and each caller gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from touchflow.activities.coalesce import Coalesced


async def test_calls_made_while_a_group_is_written_go_together_in_the_next() -> None:
    groups: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def many(items: Sequence[int]) -> list[int]:
        groups.append(list(items))
        if len(groups) == 1:
            first_started.set()
            release.wait(5)
        return [item * 10 for item in items]

    doubled = Coalesced(many)
    first = asyncio.ensure_future(doubled(1))
    await asyncio.to_thread(first_started.wait, 5)
    rest = [asyncio.ensure_future(doubled(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # one turn of the loop: each of them asks, while the first group is written
    assert len(doubled._waiting) == 3
    release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40]
    assert groups == [[1], [2, 3, 4]]


async def test_an_error_reaches_the_callers_of_its_group_only() -> None:
    def many(items: Sequence[int]) -> list[int]:
        if 0 in items:
            raise ValueError("no zero")
        return list(items)

    same = Coalesced(many)
    with pytest.raises(ValueError, match="no zero"):
        await asyncio.gather(same(0), same(1))
    assert await same(2) == 2  # the next group is written as usual


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    started, release = threading.Event(), threading.Event()

    def many(items: Sequence[int]) -> list[int]:
        started.set()
        release.wait(5)
        return list(items)

    same = Coalesced(many)
    gone, kept = asyncio.ensure_future(same(1)), asyncio.ensure_future(same(2))
    await asyncio.to_thread(started.wait, 5)
    gone.cancel()
    release.set()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await gone
