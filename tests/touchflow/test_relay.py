"""The relay of `touchflow/router.py` without Temporal: several relays (API processes) on one store, SQLite
and PostgreSQL, with a router that records when it is called and takes its time."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from temporalio.client import Client

from touchflow.db import make_engine
from touchflow.models import Event, EventIn
from touchflow.router import Relay, Router
from touchflow.storage import Store
from touchflow.testing import eventually

ROUTED = {"page_viewed"}


class Recorder(Router):
    """Stands in for Temporal: records each customer's events in the order they are routed, and fails when
    one customer's events are ever routed at once."""

    def __init__(self, store: Store, delay: float = 0.02) -> None:
        super().__init__(cast(Client, None), store, "touchflow", {})
        self.delay = delay
        self.order: dict[str, list[str]] = defaultdict(list)
        self.by: dict[str, list[str]] = defaultdict(list)  # event ids per relay
        self.active: set[str] = set()
        self.overlaps: list[str] = []
        self.fail_once: set[str] = set()
        self.blocked: dict[str, asyncio.Event] = {}

    def for_relay(self, name: str) -> Router:
        recorder = self

        class Seat(Router):
            async def route(self, event: Event) -> None:
                await recorder.route_as(name, event)

        return Seat(cast(Client, None), self.store, "touchflow", {})

    async def route_as(self, relay: str, event: Event) -> None:
        if event.customer_id in self.active:
            self.overlaps.append(event.id)
        self.active.add(event.customer_id)
        try:
            if event.id in self.blocked:  # the first call of this event waits to be let go
                await self.blocked.pop(event.id).wait()
            await asyncio.sleep(self.delay)
            if event.id in self.fail_once:
                self.fail_once.discard(event.id)
                raise ConnectionError("temporal hiccup")
            self.order[event.customer_id].append(event.id)
            self.by[relay].append(event.id)
        finally:
            self.active.discard(event.customer_id)


class RecordingRelay(Relay):
    def __init__(self, store: Store, router: Router, *, batch_size: int = 4, **kwargs: Any) -> None:
        super().__init__(
            store, _no_temporal, "touchflow", timedelta(milliseconds=20), batch_size, {}, **kwargs
        )
        self._recording = router

    async def router(self) -> Router:
        return self._recording


async def _no_temporal() -> Client:
    raise AssertionError("the recording relay never connects")


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores with engines of their own on one database: what two API processes have."""
    engines = [make_engine(db_url), make_engine(db_url)]
    yield Store(engines[0]), Store(engines[1])
    for engine in engines:
        engine.dispose()


def views(customer: str, first: int, count: int) -> list[EventIn]:
    return [
        EventIn(id=f"{customer}-{n:03d}", customer_id=customer, name="page_viewed")
        for n in range(first, first + count)
    ]


def interleaved(customers: list[str], first: int, count: int) -> list[EventIn]:
    per_customer = [views(c, first, count) for c in customers]
    return [event for round_ in zip(*per_customer, strict=True) for event in round_]


async def drain(relay: Relay, store: Store, until: asyncio.Event) -> None:
    while not until.is_set() or await asyncio.to_thread(store.outbox.size):
        await relay.relay_once()
        await asyncio.sleep(0.005)


async def test_two_relays_never_route_one_customers_events_at_once_or_out_of_order(
    stores: tuple[Store, Store],
) -> None:
    first_store, second_store = stores
    customers = ["alice", "bob", "chi"]
    recorder = Recorder(first_store)
    recorder.fail_once = {"bob-002"}  # a transient failure: bob's later events must wait behind it
    relays = [
        RecordingRelay(first_store, recorder.for_relay("first")),
        RecordingRelay(second_store, recorder.for_relay("second")),
    ]
    first_store.events.ingest(interleaved(customers, 0, 6), ROUTED)
    ingested = asyncio.Event()

    async def keep_ingesting() -> None:
        for start in range(6, 24, 6):  # more of the same customers' events while both relays run
            await asyncio.sleep(0.05)
            await asyncio.to_thread(second_store.events.ingest, interleaved(customers, start, 6), ROUTED)
        ingested.set()

    draining = [drain(relay, store, ingested) for relay, store in zip(relays, stores, strict=True)]
    await asyncio.wait_for(asyncio.gather(keep_ingesting(), *draining), 60)

    assert recorder.overlaps == []
    for customer in customers:
        assert recorder.order[customer] == [f"{customer}-{n:03d}" for n in range(24)]
    assert recorder.by["first"] and recorder.by["second"]  # both relays did part of the work


async def test_a_pass_longer_than_the_lease_keeps_its_lease(stores: tuple[Store, Store]) -> None:
    first_store, second_store = stores
    recorder = Recorder(first_store, delay=0)
    # Renewed every half second: a second of slack for a loaded machine before the lease would lapse.
    lease = timedelta(milliseconds=1500)
    slow = RecordingRelay(first_store, recorder.for_relay("slow"), lease=lease)
    other = RecordingRelay(second_store, recorder.for_relay("other"), lease=lease)
    first_store.events.ingest(views("dana", 0, 3), ROUTED)
    release = recorder.blocked["dana-000"] = asyncio.Event()

    pass_ = asyncio.create_task(slow.relay_once())
    await eventually(lambda: "dana" in recorder.active, 10, "the slow pass to be routing dana's first event")
    second_store.events.ingest(views("dana", 3, 2), ROUTED)  # later events of the same customer
    for _ in range(10):  # the other relay keeps looking for two leases' time
        await other.relay_once()
        await asyncio.sleep(0.3)
    assert recorder.by["other"] == []
    assert recorder.overlaps == []
    release.set()
    await pass_
    while first_store.outbox.size():
        await other.relay_once()
    assert recorder.order["dana"] == [f"dana-{n:03d}" for n in range(5)]
    assert recorder.overlaps == []
