"""The ingest rules, through the ingest, on SQLite and PostgreSQL: a coupon is redeemed once, by its customer,
before it expires (the unsubscribe rule: tests/api/test_unsubscribe.py; under concurrency: storage/)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import rows
from tests.support.coupons import issue
from touchflow.ingest_rules import REDEEMED_EVENT
from touchflow.models import EventIn, utcnow
from touchflow.storage import Store


def order(event_id: str, code: str, customer_id: str = "c1", **extra: object) -> EventIn:
    properties = {"order_id": event_id, "coupon_code": code}
    return EventIn(id=event_id, customer_id=customer_id, name="order_placed", properties=properties, **extra)


@pytest.mark.parametrize(
    ("customer_id", "code_of", "valid_days", "reason"),
    [
        ("c1", "issued", 30, None),
        ("c2", "issued", 30, "issued to another customer"),
        ("c1", "unknown", 30, "unknown code"),
        ("c1", "issued", -1, "expired"),  # (an event's timestamp lies at most a day ahead)
    ],
)
def test_redemption_rules(
    store: Store, customer_id: str, code_of: str, valid_days: int, reason: str | None
) -> None:
    code = issue(store, valid_days=valid_days) if code_of == "issued" else "TF-NOPE-NOPE"
    store.events.ingest([order("e1", code.lower(), customer_id, timestamp=utcnow())], {"order_placed"})
    [use] = rows.coupon_redemptions(store, code)
    assert (use.accepted, use.reason) == (reason is None, reason)
    derived = store.events.get(f"{REDEEMED_EVENT}:1")
    assert (derived is not None) == (reason is None)


def test_a_code_is_applied_once_and_the_second_use_is_recorded(store: Store) -> None:
    code = issue(store)
    relayed = {"order_placed", REDEEMED_EVENT}
    store.events.ingest([order("e1", code)], relayed)
    store.events.ingest([order("e1", code)], relayed)  # the same event again: a duplicate, nothing new
    store.events.ingest([order("e2", code)], relayed)
    uses = [(u.event_id, u.accepted, u.reason) for u in rows.coupon_redemptions(store, code)]
    assert uses == [("e1", True, None), ("e2", False, "already redeemed")]
    coupon = rows.coupon_by_code(store, code)
    assert coupon is not None and coupon.redeemed_event_id == "e1"
    derived = store.events.get(f"{REDEEMED_EVENT}:{coupon.id}")
    assert derived is not None
    assert derived.properties == {
        "coupon_id": coupon.id,
        "journey": "post_purchase",
        "order_id": "o-1",
        "redeemed_order_id": "e1",
    }
    # The derived event is relayed like any other: e1, e2 and coupon_redeemed wait in the outbox.
    assert store.outbox.size() == 3


def test_expiry_is_judged_by_when_the_order_was_received_not_by_its_timestamp(store: Store) -> None:
    def coupon(key: str, expires_in: timedelta) -> str:
        issued = store.coupons.issue(
            key=key,
            customer_id="c1",
            journey="post_purchase",
            entry_key=key,
            value=10,
            unit="percent",
            expires_at=utcnow() + expires_in,
        )
        return issued.code

    # Expired an hour ago: an order that says it was placed two hours ago arrives now, and is refused.
    late = coupon("late", -timedelta(hours=1))
    backdated = order("e-late", late, timestamp=utcnow() - timedelta(hours=2))
    # Valid for a minute more: an order whose clock runs ahead (or whose timestamp is later for any reason)
    # is received in time, and is accepted.
    valid = coupon("valid", timedelta(minutes=1))
    ahead = order("e-valid", valid, timestamp=utcnow() + timedelta(hours=2))
    store.events.ingest([backdated, ahead], {"order_placed"})

    [refused] = rows.coupon_redemptions(store, late)
    assert (refused.accepted, refused.reason) == (False, "expired")
    [accepted] = rows.coupon_redemptions(store, valid)
    assert (accepted.accepted, accepted.reason) == (True, None)
