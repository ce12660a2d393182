"""The onsite inbox's share of an API process: one poller for every open live stream, bounded stream counts,
and an executor of its own for the inbox's database calls, so browsers cannot starve the server API.

The poller asks the database once an interval for the news of every customer with an open stream here
(`store.inbox.news`: three statements, however many streams) and hands each stream its messages and unread
count. It reads the database, not an in-process queue, so it sees what any worker stored, and any number of
API processes can sit behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from touchflow.models import InboxMessage
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.storage.inbox import INBOX_PAGE_MAX

log = logging.getLogger(__name__)
T = TypeVar("T")

# Streams one customer may hold open in one API process (tabs, devices); the next gets 429.
STREAMS_PER_CUSTOMER = 10
# Messages that may wait for a stream that does not read; beyond, the stream ends and the browser resumes.
PENDING_MAX = 1000
# Ids come from one sequence but commit in any order across workers: an id counts as settled (no smaller one
# can still appear) only once it has been visible this long. Far above one single-row insert's transaction.
LATE_COMMIT_SECONDS = 10.0


class StreamRefused(Exception):
    """No room for another stream: `status` 429 (this customer's) or 503 (this process's)."""

    def __init__(self, status: int, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


class _Seen:
    """Which message ids the poller has handed out: everything up to `settled`, plus the recent ids above."""

    def __init__(self, settled: int) -> None:
        self.settled = settled
        self.recent: dict[int, float] = {}

    def fresh(self, ids: list[int], now: float) -> list[int]:
        new = [i for i in ids if i > self.settled and i not in self.recent]
        self.recent.update(dict.fromkeys(new, now))
        return new

    def mark(self, ident: int, now: float) -> None:
        """`ident` is visible now, whoever's it is: once it is old, smaller ids are taken as settled."""
        if ident > self.settled:
            self.recent.setdefault(ident, now)

    def settle(self, now: float) -> None:
        while self.recent:
            lowest = min(self.recent)
            if now - self.recent[lowest] < LATE_COMMIT_SECONDS:
                break
            self.settled = lowest
            del self.recent[lowest]


@dataclass(eq=False)
class Subscription:
    """One open stream: what the poller found for it since it last looked."""

    customer_id: str
    started: float
    pending: deque[InboxMessage] = field(default_factory=deque)
    unread: int | None = None
    ended: bool = False  # the process stops, or the stream fell too far behind
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> list[InboxMessage]:
        messages = list(self.pending)
        self.pending.clear()
        return messages


class InboxHub:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.interval = settings.inbox_poll_interval.total_seconds()
        self.max_age = settings.inbox_stream_max_age.total_seconds()
        self.max_streams = settings.inbox_max_streams
        self.executor = ThreadPoolExecutor(settings.inbox_db_threads, thread_name_prefix="touchflow-inbox")
        self.polls = 0  # polls made: what a stream costs the database is this, not the number of streams
        self._streams: dict[str, set[Subscription]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the inbox's own threads (TOUCHFLOW_INBOX_DB_THREADS of them)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args, **kwargs))

    # -- streams ------------------------------------------------------------------------------------------

    def subscribe(self, customer_id: str) -> Subscription:
        """A place for a new stream, or StreamRefused; `unsubscribe` it when the stream ends."""
        now = asyncio.get_running_loop().time()
        mine = self._streams.get(customer_id, set())
        if len(mine) >= STREAMS_PER_CUSTOMER:
            raise StreamRefused(
                429,
                f"this customer has {STREAMS_PER_CUSTOMER} live inbox streams open already; close one "
                "(a tab) or retry later",
                self._retry_after(mine, now),
            )
        if self._count >= self.max_streams:
            everyone = {s for subs in self._streams.values() for s in subs}
            raise StreamRefused(
                503,
                f"this API process holds its maximum of {self.max_streams} live inbox streams "
                "(TOUCHFLOW_INBOX_MAX_STREAMS); retry later",
                self._retry_after(everyone, now),
            )
        subscription = Subscription(customer_id, now)
        self._streams.setdefault(customer_id, set()).add(subscription)
        self._count += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll_forever(), name="touchflow-inbox-poller")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        mine = self._streams.get(subscription.customer_id)
        if mine is None or subscription not in mine:
            return
        mine.discard(subscription)
        self._count -= 1
        if not mine:
            del self._streams[subscription.customer_id]

    def _retry_after(self, streams: set[Subscription], now: float) -> int:
        """Seconds until the oldest of `streams` reaches its age and ends, freeing a place."""
        oldest = min((s.started for s in streams), default=now)
        return max(1, math.ceil(oldest + self.max_age - now))

    @property
    def open_streams(self) -> int:
        return self._count

    # -- the poller ---------------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        seen: _Seen | None = None
        while self._streams:
            try:
                if seen is None:  # what is there already, each stream reads for itself when it opens
                    seen = _Seen(await self.run(self.store.inbox.latest_id))
                full = await self._poll(seen)
            except Exception:
                # The database is away: the streams stay open, and the next poll tries again.
                log.warning("the inbox poller could not read the database", exc_info=True)
                full = False
            self.polls += 1
            if not full:  # a full page means more are waiting: ask again at once
                await asyncio.sleep(self.interval)

    async def _poll(self, seen: _Seen) -> bool:
        customers = list(self._streams)
        # Rows above `settled` include the recent ones handed out already: ask for that many more.
        limit = len(seen.recent) + INBOX_PAGE_MAX
        newest, messages, unread = await self.run(self.store.inbox.news, customers, seen.settled, limit)
        now = asyncio.get_running_loop().time()
        by_id = {m.id: m for m in messages if m.id is not None}
        for ident in seen.fresh(sorted(by_id), now):
            self._hand_out(by_id[ident])
        full = len(messages) >= limit
        if not full:  # everything up to `newest` is in hand (it was read first), so it may become settled
            seen.mark(newest, now)
        seen.settle(now)
        for customer in customers:
            count = unread.get(customer, 0)
            for subscription in self._streams.get(customer, ()):
                if subscription.unread != count:
                    subscription.unread = count
                    subscription.wake.set()
        return full

    def _hand_out(self, message: InboxMessage) -> None:
        for subscription in self._streams.get(message.customer_id, ()):
            if len(subscription.pending) >= PENDING_MAX:
                subscription.ended = True
            else:
                subscription.pending.append(message)
            subscription.wake.set()

    async def close(self) -> None:
        """End every stream and the poller, and let the executor's threads go."""
        for subs in self._streams.values():
            for subscription in subs:
                subscription.ended = True
                subscription.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)
