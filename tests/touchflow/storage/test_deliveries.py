"""Deliveries on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.support import rows
from touchflow.models import Delivery, DeliveryStatus
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
