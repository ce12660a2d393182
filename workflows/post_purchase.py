"""Post-purchase: confirm the order, ask for a review, then give a single-use coupon for the next one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from touchflow.workflows.base import BOOKKEEPING_RETRY, Journey, JourneyEvent, Reentry, Stage, Step, journey

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.types import IssueCouponInput, IssueCouponResult


@journey(starts_on="order_placed", goals=("coupon_redeemed",), key="order_id", reentry=Reentry.ONCE)
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

        self.issued = await self.issue_coupon(self.timing("coupon_valid_for"))
        coupon = {"coupon_id": self.issued.coupon_id}
        await self.send(self.coupon, event=order, data=coupon)
        # Redemption (an order carrying the code) arrives as `coupon_redeemed` and ends the wait early.
        remind_at = self.issued.expires_at - self.timing("coupon_reminder_before")
        if not await self.wait(max(remind_at - workflow.now(), timedelta(0))):
            return
        await self.send(self.coupon_reminder, event=order, data=coupon)
        await self.wait(max(self.issued.expires_at - workflow.now(), timedelta(0)))

    async def issue_coupon(self, valid_for: timedelta) -> IssueCouponResult:
        info = workflow.info()
        self._set_detail("issuing a coupon")
        result: IssueCouponResult = await workflow.execute_activity(
            "issue_coupon",
            IssueCouponInput(
                customer_id=self.customer_id,
                key=f"{info.workflow_id}:{self.entry_number}:coupon",
                journey=self.spec.name,
                entry_key=self.entry_key,
                expires_at=workflow.now() + valid_for,
            ),
            result_type=IssueCouponResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )
        return result

    def snapshot(self) -> dict[str, Any]:
        if self.issued is None:
            return {}
        return {"coupon_id": self.issued.coupon_id, "coupon_expires_at": self.issued.expires_at.isoformat()}
