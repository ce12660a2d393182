"""Deliveries on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from tests.support import rows
from touchflow.models import Delivery, DeliveryStatus, utcnow
from touchflow.storage import Store


def test_a_delivery_is_claimed_once_per_business_key(store: Store) -> None:
    row = Delivery(
        key="welcome:c:1:welcome", journey="welcome", step="welcome", customer_id="c", workflow_id="w"
    )
    first = store.deliveries.claim(row)
    rows.update_delivery(store, first.id or 0, status=DeliveryStatus.SENT, channel="email")
    second = store.deliveries.claim(row.model_copy())
    assert second.id == first.id
    assert second.status == DeliveryStatus.SENT and second.channel == "email"


def _claimed(store: Store, n: int, customer: str = "c") -> list[int]:
    made = [
        store.deliveries.claim(
            Delivery(key=f"b:{customer}:{i}", journey="b", step="s", customer_id=customer, workflow_id="w")
        )
        for i in range(n)
    ]
    return [d.id or 0 for d in made]


def test_leases_taken_together_are_each_taken_once_and_fence_their_results(store: Store) -> None:
    a, b, c = _claimed(store, 3)
    lease = timedelta(minutes=1)
    # An id asked for twice at one moment (a retry racing its slow first attempt) is taken once.
    (token_a, interrupted), (token_b, _), (again, _) = store.deliveries.start_sending_many([a, b, a], lease)
    assert token_a is not None and token_b is not None and again is None and not interrupted
    # Results recorded together: each fenced by its own token.
    recorded = store.deliveries.finish_sending_many(
        [(a, token_a, {"status": DeliveryStatus.SENT}), (b, token_b + 1, {"status": DeliveryStatus.SENT})]
    )
    assert recorded[0] is not None and recorded[0].status == DeliveryStatus.SENT
    assert recorded[0].sending_until is None
    assert recorded[1] is None  # not its lease: dropped
    # An expired lease left behind (a worker died mid-send) is taken again and says so.
    store.deliveries.start_sending_many([c], timedelta(seconds=-1))
    [(token, interrupted)] = store.deliveries.start_sending_many([c], lease)
    assert token is not None and interrupted


def test_cap_counts_and_suppressions_for_many_answer_each_in_order(store: Store) -> None:
    ids = _claimed(store, 2, "x") + _claimed(store, 1, "y")
    for delivery_id in ids:
        rows.update_delivery(store, delivery_id, sent_at=utcnow(), channel="email", marketing=True)
    counts = store.deliveries.marketing_sent_counts(["y", "nobody", "x"], timedelta(days=1))
    assert counts == [1, 0, 2]
    assert store.deliveries.marketing_sent_counts(["x"], timedelta(days=1), "zalo_zns") == [0]
    store.deliveries.suppress("email", "Gone@Example.com", "bounced")
    asked = [("email", "gone@example.com"), ("zalo_zns", "gone@example.com"), ("email", "ok@example.com")]
    assert store.deliveries.suppressed_among(asked) == [True, False, False]
