"""The store's read-modify-write paths under concurrency, on SQLite and PostgreSQL: nothing is lost.

Each test releases its threads at once (a `threading.Barrier`); each thread makes its own store call, so its
own connection and transaction.
"""

from __future__ import annotations

from tests.support.concurrency import all_at_once
from touchflow.models import CustomerIn
from touchflow.store import Store

THREADS = 16


def test_concurrent_upserts_of_one_new_customer_keep_every_attribute(store: Store) -> None:
    results = all_at_once(
        THREADS, lambda i: store.upsert_customer(CustomerIn(id="new", attributes={f"k{i}": i}))
    )
    customer = store.get_customer("new")
    assert customer is not None
    assert customer.attributes == {f"k{i}": i for i in range(THREADS)}
    assert [created for _, created in results].count(True) == 1
