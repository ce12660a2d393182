"""issue_coupon as Temporal runs it: a retried activity gets the coupon the first attempt made."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from tests.support import rows
from touchflow.activities.coupons import CouponActivities
from touchflow.activities.types import IssueCouponInput
from touchflow.storage import Store


async def test_a_retry_returns_the_same_coupon(sqlite_store: Store) -> None:
    activities = CouponActivities(sqlite_store)
    request = IssueCouponInput(
        customer_id="c1",
        key="post_purchase:c1:o-1:1:coupon",
        journey="post_purchase",
        entry_key="o-1",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        value=50_000,
        unit="vnd",
    )
    env = ActivityEnvironment()
    first = await env.run(activities.issue_coupon, request)
    second = await env.run(activities.issue_coupon, request)
    assert first == second
    assert (first.value, first.unit, first.expires_at) == (50_000, "VND", request.expires_at)
    assert len(rows.coupons_of(sqlite_store, "c1")) == 1
