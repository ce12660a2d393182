"""Calls that arrive together, made together: one transaction for the sends of one moment.

A worker sending many messages at once (a broadcast's batch, a burst of journeys) takes and releases a send
lease per message. Each is a write transaction, and on SQLite writes queue for the one writer: a commit per
message is most of what a send costs the store. `Coalesced` hands every call that arrives while the previous
group is being written to the next group, so the writes of one moment share a transaction, and each caller
still gets its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Coalesced(Generic[Item, Answer]):
    """`await coalesced(item)` runs `many([... item ...])` in a thread, with the other items asked for
    meanwhile; `many` answers in the order it was given. If it raises, every caller of that group does."""

    def __init__(self, many: Callable[[Sequence[Item]], Sequence[Answer]], *, most: int = 500) -> None:
        self.many = many
        self.most = most
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        # Shielded: a caller cancelled while its group is written does not cancel the others' answers.
        return await asyncio.shield(answer)

    async def _write(self) -> None:
        group: list[tuple[Item, asyncio.Future[Answer]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.most], self._waiting[self.most :]
                try:
                    answers = await asyncio.to_thread(self.many, [item for item, _ in group])
                except Exception as exc:  # each caller gets the error, as a call of its own would
                    for _, answer in group:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), value in zip(group, answers, strict=True):
                    if not answer.done():
                        answer.set_result(value)
        finally:
            # Cancelled (the worker stopping): no caller is left waiting for an answer that will not come.
            for _, answer in (*group, *self._waiting):
                if not answer.done():
                    answer.cancel()
            self._waiting = []
            self._writer = None
