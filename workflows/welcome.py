"""Welcome series: greet a new sign-up at once, then nudge toward a first order if none came."""

from __future__ import annotations

from touchflow.workflows.base import Journey, JourneyEvent, Stage, Step, Timing, journey


@journey(
    starts_on="signed_up",
    goals=("order_placed",),
    timings={"welcome_nudge_delay": Timing("2d", "Welcome: wait before the first-purchase nudge.")},
)
class Welcome(Journey):
    """Greets a new sign-up by email and inbox, then nudges toward a first order after a while."""

    welcome = Step(via=("email",), stage=Stage.AWARENESS)
    welcome_inbox = Step(via=("onsite",), stage=Stage.AWARENESS)
    first_purchase_nudge = Step(via=("email",), stage=Stage.CONSIDERATION)

    async def plan(self, signup: JourneyEvent) -> None:
        await self.send(self.welcome, event=signup)
        await self.send(self.welcome_inbox, event=signup)
        if await self.wait("welcome_nudge_delay"):
            await self.send(self.first_purchase_nudge, event=signup)
