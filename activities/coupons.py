"""Coupons a journey hands out: `issue_coupon` makes a unique, single-use code, once per business key.

Redemption is not an activity: an `order_placed` carrying the code is recorded when the event is stored, in
the same transaction (`touchflow.ingest_rules`), so a code is applied once whatever runs or retries.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from touchflow.activities.types import IssueCouponInput, IssueCouponResult
from touchflow.storage import Store

log = logging.getLogger(__name__)


# What a coupon is worth when a run recorded before journeys chose it (value and unit) issues one.
LEGACY_VALUE, LEGACY_UNIT = 10.0, "percent"


class CouponActivities:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="issue_coupon")
    async def issue_coupon(self, input: IssueCouponInput) -> IssueCouponResult:
        """The coupon for `input.key`: made on the first call, the same one on every retry or replay."""
        coupon = await asyncio.to_thread(
            self.store.coupons.issue,
            key=input.key,
            customer_id=input.customer_id,
            journey=input.journey,
            entry_key=input.entry_key,
            value=LEGACY_VALUE if input.value is None else input.value,
            unit=_unit(input.unit or LEGACY_UNIT),
            expires_at=input.expires_at,
        )
        assert coupon.id is not None
        log.info("coupon issued", extra={"journey": input.journey, "coupon_id": coupon.id})
        return IssueCouponResult(
            coupon_id=coupon.id, value=coupon.value, unit=coupon.unit, expires_at=coupon.expires_at
        )


def _unit(unit: str) -> str:
    """`percent` or a currency code; anything else will not mend itself on a retry."""
    if unit.lower() == "percent":
        return "percent"
    if len(unit) == 3 and unit.isalpha():
        return unit.upper()
    raise ApplicationError(
        f"coupon unit {unit!r}: use 'percent' or a 3-letter currency code such as 'VND'",
        type="InvalidCoupon",
        non_retryable=True,
    )
