"""store.broadcasts on SQLite and PostgreSQL: the snapshot's due times and batches, and erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from touchflow.models import Broadcast, CustomerIn
from touchflow.storage import Store

NINE = datetime(2026, 12, 24, 2, tzinfo=UTC)


def test_the_snapshot_is_read_back_by_due_time_and_batch(store: Store) -> None:
    store.broadcasts.create(Broadcast(id="b1", name="sale", audience={}, via=["email"], template="sale"))
    later = NINE + timedelta(hours=6)
    store.broadcasts.add_recipients(
        "b1", [("c1", NINE, 0), ("c2", NINE, 0), ("c3", NINE, 1), ("c4", later, 0)]
    )
    store.broadcasts.add_recipients("b1", [("c1", later, 5)])  # already in: keeps its row
    assert store.broadcasts.finish_snapshot("b1") == 4
    assert store.broadcasts.slots("b1") == [(NINE, 2), (later, 1)]
    assert store.broadcasts.batch("b1", NINE, 0) == ["c1", "c2"]
    assert [r.customer_id for r in store.broadcasts.recipients("b1", after="c2")] == ["c3", "c4"]
    broadcast = store.broadcasts.get("b1")
    assert broadcast is not None and broadcast.total == 4


def test_an_erased_customer_leaves_the_snapshots(store: Store) -> None:
    store.customers.upsert(CustomerIn(id="gone", email="gone@example.com"))
    store.broadcasts.create(Broadcast(id="b2", name="sale", audience={}, via=["email"], template="sale"))
    store.broadcasts.add_recipients("b2", [("gone", NINE, 0), ("kept", NINE, 0)])
    store.erase("gone")
    assert store.broadcasts.batch("b2", NINE, 0) == ["kept"]
