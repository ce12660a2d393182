"""Segment entry and exit are journey triggers and exits; segments in journey modules are collected and
checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import segment_journeys
from tests.support.segment_journeys import GoldWelcome
from touchflow.check import check
from touchflow.journeys import Attribute, in_segment, segment
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
