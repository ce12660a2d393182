"""The segment sweep: a Temporal Schedule starts this workflow every TOUCHFLOW_SEGMENT_REFRESH_INTERVAL; it
asks the `refresh_segments` activity to re-evaluate every segment over all profiles."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.types import RefreshSegmentsInput, RefreshSegmentsResult

SCHEDULE_ID = "touchflow-segment-refresh"


@workflow.defn(name="refresh_segments")
class RefreshSegments:
    @workflow.run
    async def run(self, input: RefreshSegmentsInput) -> RefreshSegmentsResult:
        result: RefreshSegmentsResult = await workflow.execute_activity(
            "refresh_segments",
            input,
            result_type=RefreshSegmentsResult,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
