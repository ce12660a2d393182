"""Segment entry and exit are journey triggers and exits; segments in journey modules are collected and
checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import segment_journeys
from tests.support.segment_journeys import GoldWelcome
from touchflow.check import check
from touchflow.journeys import Attribute, in_segment, segment
from touchflow.segments import LifecycleRules
from touchflow.settings import Settings
from touchflow.testing import JourneyHarness, registry_of
from touchflow.workflows.registry import Registry, load_registry


@pytest.fixture
def journey_registry() -> Registry:
    return registry_of(GoldWelcome, segments=[segment_journeys.gold])


async def test_entering_a_segment_starts_the_journey_and_leaving_ends_it(journeys: JourneyHarness) -> None:
    assert "segment_entered:gold" in journeys.registry.routed
    journeys.customer("g1", attributes={"tier": "gold"})
    while await journeys.relay.relay_once():
        pass
    handle = journeys.handle("gold_welcome", "g1")
    state = await journeys.state_when(handle, lambda s: s is not None)
    assert state is not None
    journeys.customer("g1", attributes={"tier": "silver"})
    while await journeys.relay.relay_once():
        pass
    assert (await journeys.outcome(handle)).status == "exited"


class TestASegmentMadeOverTheApi:
    @pytest.fixture
    def journey_registry(self) -> Registry:
        return registry_of(GoldWelcome)  # `gold` is not declared: the API makes it

    async def test_deleting_it_ends_the_journeys_of_its_members(self, journeys: JourneyHarness) -> None:
        journeys.store.segments.create("gold", "", {"attribute": "tier", "op": "eq", "value": "gold"})
        journeys.customer("g2", attributes={"tier": "gold"})
        while await journeys.relay.relay_once():
            pass
        handle = journeys.handle("gold_welcome", "g2")
        assert await journeys.state_when(handle, lambda s: s is not None) is not None
        journeys.store.segments.delete("gold")
        while await journeys.relay.relay_once():
            pass
        assert (await journeys.outcome(handle)).status == "exited"


def test_the_registry_collects_a_modules_segments(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"journeys": ["tests.support.segment_journeys"], "builtin_journeys": []}
    )
    registry = load_registry(settings, {})
    assert list(registry.segments) == ["gold"]
    assert registry.segments["gold"].condition == (Attribute("tier") == "gold")
    assert [p for p in check(registry, settings) if p.level == "error"] == []


def test_check_finds_a_segment_naming_a_missing_one() -> None:
    broken = registry_of(segments=[segment("loop", in_segment("nowhere"))])
    [problem] = check(broken, Settings.model_validate({"builtin_journeys": []}))
    assert problem.level == "error" and "nowhere" in problem.message


async def test_the_sweep_workflow_moves_segments_that_change_with_time(journeys: JourneyHarness) -> None:
    from datetime import timedelta

    from touchflow.activities.types import RefreshSegmentsInput
    from touchflow.models import EventIn, utcnow
    from touchflow.workflows.segment_refresh import RefreshSegments

    old = EventIn(id="o", customer_id="s1", name="order_placed", timestamp=utcnow() - timedelta(days=89))
    journeys.store.events.ingest([old], ())
    assert [m.segment for m in journeys.store.segments.of_customer("s1")] == ["lifecycle:customer"]
    # As if a day passed: the store's lifecycle rule lapses after 89 days now.
    journeys.store.segments.declare(
        [segment_journeys.gold], lifecycle=LifecycleRules(lapsed_after=timedelta(days=88))
    )
    result = await journeys.env.client.execute_workflow(
        RefreshSegments.run, RefreshSegmentsInput(), id="sweep", task_queue=journeys.settings.task_queue
    )
    assert (result.entered, result.exited) == (1, 1)
    assert [m.segment for m in journeys.store.segments.of_customer("s1")] == ["lifecycle:lapsed"]


async def test_the_worker_keeps_one_schedule_of_each_and_updates_its_interval() -> None:
    from temporalio.testing import WorkflowEnvironment

    from touchflow.temporal import temporal_cli
    from touchflow.worker import ensure_insight_schedule, ensure_segment_schedule
    from touchflow.workflows import insight_refresh, segment_refresh

    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli())
    try:
        for ensure, schedule_id, setting in (
            (ensure_segment_schedule, segment_refresh.SCHEDULE_ID, "segment_refresh_interval"),
            (ensure_insight_schedule, insight_refresh.SCHEDULE_ID, "insight_refresh_interval"),
        ):
            await ensure(env.client, Settings.model_validate({setting: "10m"}))
            await ensure(env.client, Settings.model_validate({setting: "5m"}))
            described = await env.client.get_schedule_handle(schedule_id).describe()
            [interval] = described.schedule.spec.intervals
            assert interval.every.total_seconds() == 300
    finally:
        await env.shutdown()
