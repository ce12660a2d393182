"""A journey module with a segment beside its journey, as a shop writes one: entering `gold` starts
`gold_welcome`, leaving it ends the run."""

from __future__ import annotations

from datetime import timedelta

from touchflow.journeys import (
    Attribute,
    Journey,
    JourneyEvent,
    SegmentEntered,
    SegmentExited,
    journey,
    segment,
)

gold = segment("gold", Attribute("tier") == "gold", description="gold tier members")


@journey(starts_on=SegmentEntered("gold"), ends_on=(SegmentExited("gold"),))
class GoldWelcome(Journey):
    """Waits a week for a gold member, unless they leave gold first."""

    async def plan(self, trigger: JourneyEvent) -> None:
        await self.wait(timedelta(days=7))
