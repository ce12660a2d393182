"""A shop's own journey, written as a shop would: only `touchflow.journeys` imported, its own activity.

Win-back starts on an order and has a later order as its goal; it calls the shop's activity for the
customer's favourite category and hands out a coupon of its own value and unit.
Its templates live in tests/support/templates/win_back/ (beside this module, as for any user module).
"""

from __future__ import annotations

from touchflow.journeys import Journey, JourneyEvent, Param, Stage, Step, Timing, activity, journey


@activity.defn
async def favourite_category(customer_id: str) -> str:
    """The shop's own lookup (a recommendation service, say); here, a rule on the id."""
    return "nón lá" if customer_id.endswith("1") else "áo dài"


@journey(
    starts_on="order_placed",
    goals=("order_placed",),
    key=None,
    timings={
        "win_back_delay": Timing("30d", "Win-back: quiet time after an order before the offer."),
        "win_back_coupon_valid_for": Timing("14d", "Win-back: how long the offer's coupon lasts."),
    },
    params={"win_back_amount": Param(50_000, "Win-back: coupon amount, in VND.")},
)
class WinBack(Journey):
    """Brings a customer back a month after their last order, with a coupon for what they like."""

    win_back = Step(via=("email",), stage=Stage.RETENTION)

    async def plan(self, order: JourneyEvent) -> None:
        category = await self.call(favourite_category, self.customer_id)
        if not await self.wait("win_back_delay"):
            return  # they ordered again: converted
        coupon = await self.issue_coupon(
            "win_back_coupon_valid_for", value=self.param("win_back_amount"), unit="VND", name="win_back"
        )
        await self.send(
            self.win_back, event=order, data={"coupon_id": coupon.coupon_id, "category": category}
        )
