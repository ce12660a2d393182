"""The store's read-modify-write paths under concurrency, on SQLite and PostgreSQL: nothing is lost.

Each test releases its threads at once (a `threading.Barrier`); each thread makes its own store call, so its
own connection and transaction.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import rows
from tests.support.concurrency import all_at_once
from touchflow.models import CustomerIn, EventIn, IngestStatus, utcnow
from touchflow.storage import Store

THREADS = 16


def test_concurrent_upserts_of_one_new_customer_keep_every_attribute(store: Store) -> None:
    results = all_at_once(
        THREADS, lambda i: store.customers.upsert(CustomerIn(id="new", attributes={f"k{i}": i}))
    )
    customer = store.customers.get("new")
    assert customer is not None
    assert customer.attributes == {f"k{i}": i for i in range(THREADS)}
    assert [created for _, created in results].count(True) == 1


CONSENT_PATHS = ("set_consents", "upsert_customer", "unsubscribed")


@pytest.mark.parametrize(
    "paths", [*((path,) for path in CONSENT_PATHS), CONSENT_PATHS], ids=[*CONSENT_PATHS, "mixed"]
)
def test_concurrent_consent_changes_keep_every_change(store: Store, paths: tuple[str, ...]) -> None:
    """Each thread turns off another channel's marketing consent, by one path or all of them mixed: the
    unsubscribe link (`set_consents`), a profile upsert, an `unsubscribed` event."""
    store.customers.upsert(CustomerIn(id="c", consents={"marketing": True}))

    def turn_off(i: int) -> None:
        path = paths[i % len(paths)]
        if path == "set_consents":
            store.customers.set_consents("c", {f"ch{i}.marketing": False})
        elif path == "upsert_customer":
            store.customers.upsert(CustomerIn(id="c", consents={f"ch{i}.marketing": False}))
        else:
            event = EventIn(
                id=f"u{i}", customer_id="c", name="unsubscribed", properties={"channel": f"ch{i}"}
            )
            assert [done.status for done in store.events.ingest([event], set())] == [IngestStatus.ACCEPTED]

    all_at_once(THREADS, turn_off)
    customer = store.customers.get("c")
    assert customer is not None
    assert customer.consents == {"marketing": True} | {f"ch{i}.marketing": False for i in range(THREADS)}


def test_a_coupon_redeemed_by_concurrent_orders_is_applied_once(store: Store) -> None:
    coupon = store.coupons.issue(
        key="post_purchase:c1:o-1:1:coupon",
        customer_id="c1",
        journey="post_purchase",
        entry_key="o-1",
        value=10,
        unit="percent",
        expires_at=utcnow() + timedelta(days=30),
    )

    def order(i: int) -> None:
        placed = EventIn(
            id=f"o-{i}",
            customer_id="c1",
            name="order_placed",
            properties={"order_id": f"o-{i}", "coupon_code": coupon.code},
        )
        assert [done.status for done in store.events.ingest([placed], {"order_placed"})] == [
            IngestStatus.ACCEPTED
        ]

    all_at_once(THREADS, order)
    uses = rows.coupon_redemptions(store, coupon.code)
    assert len(uses) == THREADS
    assert [use.accepted for use in uses].count(True) == 1
    assert {use.reason for use in uses if not use.accepted} == {"already redeemed"}
    redeemed = rows.coupon_by_code(store, coupon.code)
    assert redeemed is not None and redeemed.redeemed_event_id == next(u.event_id for u in uses if u.accepted)


@pytest.mark.parametrize("name", ["signed_up", "unsubscribed"])
def test_batches_naming_the_same_customers_in_other_orders_never_deadlock(store: Store, name: str) -> None:
    """Concurrent batches that create the same new customers, or unsubscribe the same known ones, listed in
    opposite orders: on PostgreSQL each locks those rows, and locks taken in two orders used to deadlock."""
    customers = [f"c{n:03}" for n in range(200)]
    if name == "unsubscribed":
        store.events.ingest(
            [EventIn(id=f"seed-{c}", customer_id=c, name="signed_up") for c in customers], set()
        )
    for round_ in range(3):
        prefix = f"r{round_}-" if name == "signed_up" else ""  # new customers each round, or the same ones

        def ingest(i: int, prefix: str = prefix, round_: int = round_) -> None:
            listed = customers if i % 2 == 0 else customers[::-1]
            batch = [
                EventIn(
                    id=f"{round_}-{i}-{c}",
                    customer_id=prefix + c,
                    name=name,
                    properties={"channel": f"ch{i}"},
                )
                for c in listed
            ]
            assert {done.status for done in store.events.ingest(batch, set())} == {IngestStatus.ACCEPTED}

        all_at_once(4, ingest)
    if name == "unsubscribed":
        customer = store.customers.get(customers[0])
        assert customer is not None
        assert customer.consents == {f"ch{i}.marketing": False for i in range(4)}
