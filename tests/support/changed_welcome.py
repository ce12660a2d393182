"""The welcome journey with its plan changed incompatibly (a wait before the first send, where the recorded
runs sent at once): what a replay check must refuse."""

from __future__ import annotations

from touchflow.journeys import Journey, JourneyEvent, Stage, Step, journey


@journey(
    name="welcome", starts_on="signed_up", goals=("order_placed",), timings={"welcome_nudge_delay": "2d"}
)
class ChangedWelcome(Journey):
    welcome = Step(via=("email",), stage=Stage.AWARENESS)

    async def plan(self, signup: JourneyEvent) -> None:
        if await self.wait("welcome_nudge_delay"):
            await self.send(self.welcome, event=signup)
