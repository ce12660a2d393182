"""Coupons in the store (SQLite and PostgreSQL): issued once per key, with unique codes."""

from __future__ import annotations

from tests.support.coupons import issue
from touchflow.storage import Store
from touchflow.storage.coupons import new_coupon_code


def test_issuing_is_idempotent_by_key_and_codes_are_unique(store: Store) -> None:
    first = issue(store)
    assert issue(store) == first
    other = issue(store, key="post_purchase:c1:o-2:2:coupon")
    assert other != first
    assert len({new_coupon_code() for _ in range(500)}) == 500
