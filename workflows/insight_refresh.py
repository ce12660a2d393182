"""The insight refresh: a Temporal Schedule starts this workflow every TOUCHFLOW_INSIGHT_REFRESH_INTERVAL;
it asks the `refresh_insight` activity to bring the journey map's rollups and kept attributions up to date."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.types import RefreshInsightInput, RefreshInsightResult

SCHEDULE_ID = "touchflow-insight-refresh"


@workflow.defn(name="refresh_insight")
class RefreshInsight:
    @workflow.run
    async def run(self, input: RefreshInsightInput) -> RefreshInsightResult:
        result: RefreshInsightResult = await workflow.execute_activity(
            "refresh_insight",
            input,
            result_type=RefreshInsightResult,
            start_to_close_timeout=timedelta(minutes=30),
            # A week of one journey's hours is one transaction: a few seconds over a million deliveries.
            heartbeat_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return result
