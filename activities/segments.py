"""Segment upkeep the schedule asks for: re-evaluate whole segments, so conditions that change with time alone
("no order in 30 days", a lifecycle stage lapsing) move their members without an event."""

from __future__ import annotations

import asyncio

from temporalio import activity

from touchflow.activities.types import RefreshSegmentsInput, RefreshSegmentsResult
from touchflow.storage import Store


class SegmentActivities:
    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="refresh_segments")
    async def refresh_segments(self, input: RefreshSegmentsInput) -> RefreshSegmentsResult:
        """One query per segment over all profiles (`store.segments.refresh`); entries and exits are recorded
        and the segment events journeys listen to are queued for the relay, as on ingest."""
        moves = await asyncio.to_thread(self.store.segments.refresh, input.names)
        entered = sum(move.entered for move in moves)
        activity.logger.info("segments refreshed", extra={"entered": entered, "exited": len(moves) - entered})
        return RefreshSegmentsResult(entered=entered, exited=len(moves) - entered)
