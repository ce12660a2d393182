"""storage/identities.py: an anonymous visitor merged into a known customer, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Connection

import touchflow.storage.events as events_module
from tests.support.concurrency import all_at_once
from touchflow.models import (
    Customer,
    CustomerIn,
    Event,
    EventIn,
    InboxMessage,
    JourneyStatus,
    PushSubscriptionIn,
    utcnow,
)
from touchflow.storage import Store
from touchflow.storage.base import table
from touchflow.storage.identities import Merged
from touchflow.visitors import forget_stale

VISITOR = "anon:5f3a9c1e-visitor"


def visit(store: Store, customer_id: str = VISITOR, event_id: str = "e-cart") -> None:
    store.events.ingest(
        [EventIn(id=event_id, customer_id=customer_id, name="cart_updated", properties={"cart_id": "k1"})],
        relayed_names={"cart_updated"},
    )


def subscription(endpoint: str = "https://fcm.googleapis.com/fcm/send/abc") -> PushSubscriptionIn:
    return PushSubscriptionIn.model_validate(
        {"endpoint": endpoint, "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22}}
    )


def test_a_merge_hands_the_visitors_history_to_the_customer(store: Store) -> None:
    store.customers.upsert(CustomerIn(id=VISITOR, locale="vi-VN", attributes={"seen": "ads", "city": "HN"}))
    visit(store)
    store.push.save(VISITOR, subscription())
    store.inbox.add(key="k-1", customer_id=VISITOR, title="Giỏ hàng", body="...", action_url=None)
    store.journeys.enter(
        run_id="r-1",
        workflow_id=f"abandoned_cart:{VISITOR}:k1",
        journey="abandoned_cart",
        customer_id=VISITOR,
        entry_key="k1",
    )
    store.customers.upsert(CustomerIn(id="u-1", email="lan@example.vn", attributes={"city": "Hà Nội"}))

    assert store.identities.merge(VISITOR, "u-1") is Merged.MERGED

    customer = store.customers.get("u-1")
    assert customer is not None and customer.email == "lan@example.vn"
    assert customer.locale == "vi-VN"  # filled in from the visitor
    assert customer.attributes == {"seen": "ads", "city": "Hà Nội"}  # what the customer said wins
    assert [e.id for e in store.events.of_customer("u-1")] == ["e-cart"]
    assert [s.endpoint for s in store.push.of_customer("u-1")] == [subscription().endpoint]
    assert store.inbox.unread_count("u-1") == 1
    [entry] = store.journeys.active_entries("abandoned_cart", "u-1")
    assert entry.workflow_id == f"abandoned_cart:{VISITOR}:k1"  # the run keeps its id
    assert not store.customers.exists(VISITOR)
    # The anonymous id names the customer from now on: a run begun for it finds them, a late event is theirs.
    found = store.customers.get(VISITOR)
    assert found is not None and found.id == "u-1"
    assert store.identities.known_as(VISITOR) == "u-1"
    visit(store, event_id="e-late")
    assert {e.id for e in store.events.of_customer("u-1")} == {"e-cart", "e-late"}
    assert not store.customers.exists(VISITOR)


def test_a_repeated_merge_changes_nothing_and_another_customer_is_refused(store: Store) -> None:
    visit(store)
    assert store.identities.merge(VISITOR, "u-1") is Merged.MERGED
    assert store.identities.merge(VISITOR, "u-1") is Merged.ALREADY
    assert store.identities.merge(VISITOR, "u-2") is Merged.REFUSED
    assert [e.id for e in store.events.of_customer("u-1")] == ["e-cart"]
    assert store.events.of_customer("u-2") == []


def test_two_known_customers_are_never_merged(store: Store) -> None:
    store.customers.upsert(CustomerIn(id="u-1"))
    store.customers.upsert(CustomerIn(id="u-2"))
    assert store.identities.merge("u-1", "u-2") is Merged.REFUSED
    assert store.identities.merge(VISITOR, "anon:other") is Merged.REFUSED
    assert store.customers.exists("u-1") and store.customers.exists("u-2")


def test_racing_merges_of_one_visitor_merge_once(store: Store) -> None:
    for i in range(5):
        visit(store, event_id=f"e-{i}")
    outcomes = all_at_once(8, lambda _: store.identities.merge(VISITOR, "u-1"))
    assert sorted(outcomes) == sorted([Merged.MERGED] + [Merged.ALREADY] * 7)
    assert len(store.events.of_customer("u-1")) == 5


def test_racing_merges_into_two_customers_give_the_visitor_to_one(store: Store) -> None:
    visit(store)
    outcomes = all_at_once(8, lambda i: store.identities.merge(VISITOR, f"u-{i % 2}"))
    assert outcomes.count(Merged.MERGED) == 1 and outcomes.count(Merged.REFUSED) == 4
    owner = store.identities.known_as(VISITOR)
    assert [e.id for e in store.events.of_customer(str(owner))] == ["e-cart"]


def test_visitors_who_never_identify_are_forgotten_after_the_ttl(store: Store) -> None:
    visit(store, customer_id="anon:gone", event_id="e-old")
    visit(store, customer_id="anon:in-a-journey", event_id="e-j")
    store.journeys.enter(
        run_id="r-j",
        workflow_id="abandoned_cart:anon:in-a-journey:k1",
        journey="abandoned_cart",
        customer_id="anon:in-a-journey",
        entry_key="k1",
    )
    visit(store, customer_id="u-known", event_id="e-known")
    later = utcnow() + timedelta(days=31)
    assert forget_stale(store, timedelta(days=30), now=later) == 1
    assert not store.customers.exists("anon:gone") and store.events.get("e-old") is None
    assert store.customers.exists("anon:in-a-journey") and store.customers.exists("u-known")
    # Once its journey is over, the second goes too; nobody seen within the TTL goes.
    [entry] = store.journeys.active_entries("abandoned_cart", "anon:in-a-journey")
    store.journeys.leave(entry.run_id, JourneyStatus.COMPLETED, None)
    visit(store, customer_id="anon:fresh", event_id="e-fresh")
    assert forget_stale(store, timedelta(days=30)) == 0
    assert forget_stale(store, timedelta(days=30), now=later) == 2
    assert not store.customers.exists("anon:in-a-journey") and not store.customers.exists("anon:fresh")
    assert store.customers.exists("u-known")


def test_a_merge_racing_an_ingest_of_the_visitors_events_leaves_nothing_under_the_visitor(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    visit(store, event_id="e-before")
    real = events_module.known_ids
    merging: list[threading.Thread] = []

    def merge_meanwhile(conn: Connection, customer_ids: Collection[str]) -> dict[str, str]:
        found = real(conn, customer_ids)  # the ingest has looked: the visitor is no one yet
        thread = threading.Thread(target=store.identities.merge, args=(VISITOR, "u-1"))
        thread.start()  # an identify commits meanwhile, unless the ingest holds it off
        thread.join(timeout=0.5)
        merging.append(thread)
        return found

    monkeypatch.setattr(events_module, "known_ids", merge_meanwhile)
    visit(store, event_id="e-during")
    monkeypatch.undo()
    merging[0].join()

    assert store.identities.known_as(VISITOR) == "u-1"
    assert {e.id for e in store.events.of_customer("u-1")} == {"e-before", "e-during"}
    assert not store.customers.exists(VISITOR)


def test_writes_under_a_merged_visitors_id_are_the_customers_and_the_link_outlives_the_sweep(
    store: Store,
) -> None:
    visit(store)
    assert store.identities.merge(VISITOR, "u-1") is Merged.MERGED

    # A late identify carrying only the anonymousId, and a subscription posted under the cookie's id.
    customer, created = store.customers.upsert(CustomerIn(id=VISITOR, phone="+84901234567"))
    assert customer.id == "u-1" and customer.phone == "+84901234567" and not created
    row, _ = store.push.save(VISITOR, subscription())
    assert row.customer_id == "u-1"
    assert not store.customers.exists(VISITOR)

    # Nothing anonymous is left to forget; erasing the anonymous id itself keeps the link.
    assert forget_stale(store, timedelta(days=30), now=utcnow() + timedelta(days=31)) == 0
    store.erase(VISITOR)
    assert store.identities.known_as(VISITOR) == "u-1"
    visit(store, event_id="e-later")
    assert {e.id for e in store.events.of_customer("u-1")} == {"e-cart", "e-later"}
    # The customer's own erasure takes the link with them.
    store.erase("u-1")
    assert store.identities.known_as(VISITOR) is None


def test_the_sweep_keeps_a_visitor_who_subscribed_to_push_or_read_the_inbox_within_the_ttl(
    store: Store,
) -> None:
    for visitor in ("anon:pushed", "anon:reader", "anon:gone"):
        visit(store, customer_id=visitor, event_id=f"e-{visitor}")
    store.inbox.add(key="k-r", customer_id="anon:reader", title="Giỏ hàng", body="...", action_url=None)
    long_ago = utcnow() - timedelta(days=40)  # the visits were 40 days ago
    with store.engine.begin() as conn:
        conn.execute(update(table(Customer)).values(updated_at=long_ago, created_at=long_ago))
        conn.execute(update(table(Event)).values(received_at=long_ago))
        conn.execute(update(table(InboxMessage)).values(created_at=long_ago))
    # Today, without a single event, one subscribes to web push and the other reads the inbox.
    store.push.save("anon:pushed", subscription())
    [message] = store.inbox.list("anon:reader").messages
    store.inbox.mark("anon:reader", message.id, "read")

    assert forget_stale(store, timedelta(days=30)) == 1
    assert not store.customers.exists("anon:gone")
    assert len(store.push.of_customer("anon:pushed")) == 1
    assert store.customers.exists("anon:reader") and store.inbox.unread_count("anon:reader") == 0
