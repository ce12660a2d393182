"""Browse abandonment: remind a visitor of a product they looked at but did not put in the cart."""

from datetime import timedelta

from touchflow.journeys import Journey, JourneyEvent, Reentry, Stage, Step, journey


@journey(
    starts_on="product_viewed",  # the trigger: signal-with-start on browse_abandonment:<customer>
    ends_on=("cart_updated",),  # exits: the visitor moved on
    goals=("order_placed",),  # the goal: counts as converted
    reentry=Reentry.COOLDOWN,  # at most one reminder a week, however much they browse
    cooldown=timedelta(days=7),
)
class BrowseAbandonment(Journey):
    """Reminds a visitor of the last product they looked at, four hours after they stopped browsing."""

    browse_reminder = Step(
        via=("web_push", "email"),  # try push first, fall back to email
        stage=Stage.CONSIDERATION,
        experiment="browse_copy",  # sticky A/B split: the variant is recorded on the delivery
    )

    async def plan(self, viewed: JourneyEvent) -> None:
        # Each new product_viewed starts the quiet time over; the guard re-checks the store before sending.
        if await self.wait(timedelta(hours=4), restart_on=("product_viewed",)):
            await self.send(self.browse_reminder, event=self.latest("product_viewed"))
