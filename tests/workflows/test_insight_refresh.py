"""workflows/insight_refresh.py: the workflow the insight schedule starts, run by the worker."""

from __future__ import annotations

from sqlalchemy import func, select

from touchflow.activities.types import RefreshInsightInput
from touchflow.models import AttributionState, FunnelRollupHour
from touchflow.storage.base import table
from touchflow.testing import JourneyHarness
from touchflow.workflows.insight_refresh import RefreshInsight


async def test_the_refresh_workflow_keeps_rollups_and_attributions(journeys: JourneyHarness) -> None:
    # What it counts is tested in tests/activities/test_insight.py; here: registered, run, its result back.
    result = await journeys.env.client.execute_workflow(
        RefreshInsight.run, RefreshInsightInput(), id="insight", task_queue=journeys.settings.task_queue
    )
    assert result.journeys == len(journeys.registry)
    with journeys.store.engine.connect() as conn:
        assert conn.scalar(select(table(AttributionState).c.watermark)) is not None
        assert conn.scalar(select(func.count()).select_from(table(FunnelRollupHour))) == result.hours
