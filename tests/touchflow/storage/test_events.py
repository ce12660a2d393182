"""Events and the outbox, on SQLite and PostgreSQL: stored once, queued when routed, leased per customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from touchflow.models import Event, EventIn, IngestStatus
from touchflow.storage import Store
from touchflow.storage.base import among, table


def ev(id: str, name: str = "signed_up", customer: str = "c-1", **props: object) -> EventIn:
    return EventIn(id=id, customer_id=customer, name=name, properties=dict(props))


def test_ingest_stores_once_and_queues_only_routed_events(store: Store) -> None:
    results = store.events.ingest([ev("a"), ev("b", "page_viewed"), ev("a")], {"signed_up"})
    assert [r.status for r in results] == [
        IngestStatus.ACCEPTED,
        IngestStatus.ACCEPTED,
        IngestStatus.DUPLICATE,
    ]
    assert [r.status for r in store.events.ingest([ev("a"), ev("c")], {"signed_up"})] == [
        IngestStatus.DUPLICATE,
        IngestStatus.ACCEPTED,
    ]
    assert store.outbox.size() == 2
    customer = store.customers.get("c-1")
    assert customer is not None and customer.email is None


def test_among_finds_the_rows_of_one_value_many_or_none(store: Store) -> None:
    store.events.ingest([ev("a"), ev("b"), ev("c")], set())
    ids = table(Event).c.id
    with store.engine.connect() as conn:

        def found(values: list[str]) -> list[str]:
            return sorted(conn.scalars(select(ids).where(among(conn, ids, values))))

        assert found(["b"]) == ["b"]
        assert found(["c", "a", "missing"]) == ["a", "c"]
        assert found(["missing"]) == []
        assert found([]) == []


def test_ingest_keeps_a_given_timestamp_as_aware_utc(store: Store) -> None:
    when = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    store.events.ingest([EventIn(id="t", customer_id="c", name="x", timestamp=when)], set())
    stored = store.events.get("t")
    assert stored is not None
    assert stored.occurred_at == when and stored.occurred_at.tzinfo is not None


def test_outbox_leases_take_whole_customers_until_the_pass_ends(store: Store) -> None:
    store.events.ingest([ev(f"e{i}") for i in range(5)] + [ev("f0", customer="c-2")], {"signed_up"})
    first = store.outbox.claim(3, timedelta(minutes=1), "relay-a")
    second = store.outbox.claim(10, timedelta(minutes=1), "relay-b")
    assert [c.event.id for c in first] == ["e0", "e1", "e2"]
    # c-1 is relay-a's, its later entries too: relay-b gets only the other customer
    assert [c.event.id for c in second] == ["f0"]
    assert store.outbox.claim(10, timedelta(minutes=1), "relay-b") == []

    store.outbox.retry(first[0].outbox_id, "temporal down", timedelta(0), "relay-a")
    store.outbox.finish([c.outbox_id for c in first[1:]], "relay-a", ["c-1"])
    again = store.outbox.claim(10, timedelta(minutes=1), "relay-b")
    assert [(c.event.id, c.attempts) for c in again] == [("e0", 2), ("e3", 1), ("e4", 1)]
    assert store.outbox.size() == 4


def test_an_entry_in_back_off_holds_back_its_customers_later_entries(store: Store) -> None:
    store.events.ingest([ev("e0"), ev("e1"), ev("f0", customer="c-2")], {"signed_up"})
    [head, _, _] = store.outbox.claim(10, timedelta(minutes=1), "relay-a")
    store.outbox.retry(head.outbox_id, "temporal: not found", timedelta(minutes=5), "relay-a")
    store.outbox.finish([], "relay-a", ["c-1", "c-2"])
    # e1 is due, but it would overtake e0: nothing of c-1 until e0 is
    assert [c.event.id for c in store.outbox.claim(10, timedelta(minutes=1), "relay-b")] == ["f0"]


def test_only_the_holder_puts_an_entry_off(store: Store) -> None:
    store.events.ingest([ev("e0")], {"signed_up"})
    [claimed] = store.outbox.claim(10, timedelta(seconds=-1), "relay-a")  # relay-a stalls past its lease
    [taken_over] = store.outbox.claim(10, timedelta(minutes=1), "relay-b")
    store.outbox.retry(claimed.outbox_id, "late", timedelta(minutes=5), "relay-a")  # changes nothing
    store.outbox.finish([], "relay-b", ["c-1"])
    [again] = store.outbox.claim(10, timedelta(minutes=1), "relay-b")
    assert claimed.event.id == taken_over.event.id == again.event.id == "e0"


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    store.events.ingest([ev("lost")], {"signed_up"})
    [claimed] = store.outbox.claim(
        10, timedelta(seconds=-1), "relay-a"
    )  # the relay that took it died at once
    [taken_over] = store.outbox.claim(10, timedelta(minutes=1), "relay-b")
    assert taken_over.event.id == claimed.event.id == "lost"


def test_event_since_finds_goals_for_the_entry_only(store: Store) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    store.events.ingest([ev("o1", "order_placed", cart_id="cart-1")], set())
    assert store.events.first_since("c-1", ["order_placed"], start, {"cart_id": "cart-2"}) is None
    found = store.events.first_since("c-1", ["order_placed"], start, {"cart_id": "cart-1"})
    assert found is not None and found.id == "o1"
    assert store.events.first_since("c-1", ["order_placed"], datetime.now(UTC) + timedelta(hours=1)) is None
