"""Erasure on SQLite and PostgreSQL (the whole path, with Temporal, is tests/api/test_erasure.py)."""

from __future__ import annotations

from tests.support.push_service import Subscriber
from touchflow.storage import Store


def test_erasure_deletes_the_customers_push_subscriptions(store: Store) -> None:
    for customer, token in (("gone", "a"), ("gone", "b"), ("stays", "c")):
        device = Subscriber(token=token, endpoint=f"https://push.example/{token}")
        store.push.save(customer, device.subscription_in())

    removed = store.erase("gone")

    assert removed["push_subscriptions"] == 2
    assert store.push.of_customer("gone") == []
    assert len(store.push.of_customer("stays")) == 1
