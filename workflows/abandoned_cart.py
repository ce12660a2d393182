"""Abandoned cart: remind a customer of the cart they left, twice, with its newest contents."""

from __future__ import annotations

from touchflow.workflows.base import Journey, JourneyEvent, Reentry, Stage, Step, Timing, journey


@journey(
    starts_on="cart_updated",
    ends_on=("cart_cleared",),
    goals=("order_placed",),
    key="cart_id",
    reentry=Reentry.ONCE,
    timings={
        "cart_reminder_delay": Timing("1h", "Abandoned cart: quiet time after the cart's last change."),
        "cart_second_reminder_delay": Timing(
            "23h", "Abandoned cart: time after reminder 1 before reminder 2."
        ),
        "cart_goal_window": Timing(
            "72h", "Abandoned cart: an order this long after the last change converts."
        ),
    },
)
class AbandonedCart(Journey):
    """Reminds of a cart left behind: by push after an hour, by email with its items a day later."""

    cart_reminder_1 = Step(
        via=("web_push", "email"), stage=Stage.CONSIDERATION, experiment="cart_reminder_copy"
    )
    cart_reminder_2 = Step(via=("email", "zalo_zns"), stage=Stage.CONSIDERATION)

    async def plan(self, cart: JourneyEvent) -> None:
        # Every newer `cart_updated` of this cart starts the quiet time over; reminders show its contents.
        if not await self.wait("cart_reminder_delay", restart_on=("cart_updated",)):
            return
        await self.send(self.cart_reminder_1, event=self.latest("cart_updated"))
        if not await self.wait("cart_second_reminder_delay", restart_on=("cart_updated",)):
            return
        await self.send(self.cart_reminder_2, event=self.latest("cart_updated"))
        # The goal: an order within `cart_goal_window` of the cart's last change counts as converted.
        left = self.timing("cart_goal_window") - self.since_latest("cart_updated")
        if left.total_seconds() > 0:
            await self.wait(left)
