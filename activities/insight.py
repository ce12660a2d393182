"""Insight upkeep the schedule asks for: every journey's per-hour rollups and the kept attributions brought up
to date in the background, so the first view of a journey map after an import reads them, not counts."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from datetime import timedelta

from temporalio import activity

from touchflow.activities.types import RefreshInsightInput, RefreshInsightResult
from touchflow.insight import keep_attributions
from touchflow.storage import Store
from touchflow.workflows.base import JourneySpec


class InsightActivities:
    def __init__(self, store: Store, journeys: Mapping[str, JourneySpec], window: timedelta) -> None:
        self.store = store
        self.journeys = journeys
        self.window = window

    @activity.defn(name="refresh_insight")
    async def refresh_insight(self, input: RefreshInsightInput) -> RefreshInsightResult:
        """What a read with no period does, without reading: each journey's stale hours recounted
        (`store.rollups.refresh`, a week of hours per transaction), then the attributions kept up to the
        settled events (`insight.keep_attributions`). Heartbeats between steps; a retry starts over, and
        finds the journeys already done current. Broadcasts are counted from their deliveries, not rolled
        up: nothing to keep for them but the attributions."""
        names = input.journeys if input.journeys is not None else list(self.journeys)
        loop, here = asyncio.get_running_loop(), contextvars.copy_context()
        hours = 0
        for name in names:

            def beat(journey: str = name) -> None:
                # Called in the counting thread; the SDK heartbeats on the loop, in the activity's context.
                loop.call_soon_threadsafe(activity.heartbeat, journey, context=here)

            hours += await asyncio.to_thread(self.store.rollups.refresh, name, beat)
            activity.heartbeat(name)
        await asyncio.to_thread(keep_attributions, self.store, self.journeys, self.window)
        activity.logger.info("insight refreshed", extra={"journeys": len(names), "hours": hours})
        return RefreshInsightResult(journeys=len(names), hours=hours)
