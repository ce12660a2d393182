"""A coupon issued as the post-purchase journey issues one, for the tests of issuing and redeeming codes."""

from __future__ import annotations

from datetime import timedelta

from touchflow.models import utcnow
from touchflow.storage import Store


def issue(
    store: Store, key: str = "post_purchase:c1:o-1:1:coupon", customer_id: str = "c1", valid_days: int = 30
) -> str:
    """Its code; issued once per `key`, so a second call with the key returns the same one."""
    coupon = store.coupons.issue(
        key=key,
        customer_id=customer_id,
        journey="post_purchase",
        entry_key="o-1",
        value=10,
        unit="percent",
        expires_at=utcnow() + timedelta(days=valid_days),
    )
    return coupon.code
