"""Customer profiles on SQLite and PostgreSQL."""

from __future__ import annotations

from touchflow.models import CustomerIn
from touchflow.storage import Store


def test_upsert_merges_attributes_and_keeps_unsent_fields(store: Store) -> None:
    _, created = store.customers.upsert(CustomerIn(id="c", email="a@example.com", attributes={"a": 1}))
    _, created_again = store.customers.upsert(CustomerIn(id="c", attributes={"b": 2}))
    customer = store.customers.get("c")
    assert (created, created_again) == (True, False)
    assert customer is not None
    assert customer.email == "a@example.com"
    assert customer.attributes == {"a": 1, "b": 2}
