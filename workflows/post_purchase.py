"""Post-purchase: confirm the order, ask for a review, then give a single-use coupon for the next one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from touchflow.workflows.base import Journey, JourneyEvent, Param, Reentry, Stage, Step, Timing, journey

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.types import IssueCouponResult


def coupon_unit(text: str) -> str:
    """`percent`, or a 3-letter currency code for an amount off (`vnd` → `VND`)."""
    value = text.strip()
    if value.lower() == "percent":
        return "percent"
    if len(value) != 3 or not value.isalpha():
        raise ValueError("must be 'percent' or a 3-letter currency code such as 'VND'")
    return value.upper()


def positive_number(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number above 0")
    return value


@journey(
    starts_on="order_placed",
    goals=("coupon_redeemed",),
    key="order_id",
    reentry=Reentry.ONCE,
    timings={
        "review_request_delay": Timing(
            "5d", "Post-purchase: time after the order before the review request."
        ),
        "coupon_valid_for": Timing("30d", "Post-purchase: coupon lifetime."),
        "coupon_reminder_before": Timing(
            "3d", "Post-purchase: remind this long before an unused coupon expires."
        ),
    },
    params={
        "coupon_value": Param(10, "Post-purchase coupon value (see coupon_unit).", positive_number),
        "coupon_unit": Param(
            "percent", "`percent`, or a currency code (`VND`, `USD`) for an amount off.", coupon_unit
        ),
    },
)
class PostPurchase(Journey):
    """Confirms an order, asks for a review, then gives a coupon and reminds before it expires."""

    order_confirmation = Step(via=("email",), stage=Stage.PURCHASE, transactional=True)
    order_confirmation_zns = Step(via=("zalo_zns",), stage=Stage.PURCHASE, transactional=True)
    review_request = Step(via=("email",), stage=Stage.ADVOCACY)
    coupon = Step(via=("email", "zalo_zns"), stage=Stage.RETENTION)
    coupon_reminder = Step(via=("web_push", "email"), stage=Stage.RETENTION)

    def __init__(self) -> None:
        super().__init__()
        self.issued: IssueCouponResult | None = None

    async def plan(self, order: JourneyEvent) -> None:
        await self.send(self.order_confirmation, event=order)
        # Zalo reaches customers by phone: the step is skipped for those without one.
        await self.send(self.order_confirmation_zns, event=order)
        if not await self.wait("review_request_delay"):
            return
        await self.send(self.review_request, event=order)

        self.issued = await self.issue_coupon(
            "coupon_valid_for", value=self.param("coupon_value"), unit=self.param("coupon_unit")
        )
        coupon = {"coupon_id": self.issued.coupon_id}
        await self.send(self.coupon, event=order, data=coupon)
        # Redemption (an order carrying the code) arrives as `coupon_redeemed` and ends the wait early.
        remind_at = self.issued.expires_at - self.timing("coupon_reminder_before")
        if not await self.wait(max(remind_at - workflow.now(), timedelta(0))):
            return
        await self.send(self.coupon_reminder, event=order, data=coupon)
        await self.wait(max(self.issued.expires_at - workflow.now(), timedelta(0)))

    def snapshot(self) -> dict[str, Any]:
        if self.issued is None:
            return {}
        return {"coupon_id": self.issued.coupon_id, "coupon_expires_at": self.issued.expires_at.isoformat()}
