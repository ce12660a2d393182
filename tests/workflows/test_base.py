"""The `@journey` declaration: what it derives, and the mistakes it refuses at import time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.common import WorkflowIDReusePolicy

from touchflow.workflows.base import (
    Journey,
    JourneyEvent,
    Reentry,
    Stage,
    Step,
    as_datetime,
    as_int,
    as_number,
    as_text,
    journey,
)


def test_a_journey_without_a_plan_is_refused() -> None:
    with pytest.raises(TypeError, match="async def plan"):

        @journey(starts_on="x")
        class NoPlan(Journey):
            pass


def test_cooldown_reentry_needs_a_cooldown() -> None:
    with pytest.raises(ValueError, match="needs a cooldown"):

        @journey(starts_on="x", reentry=Reentry.COOLDOWN)
        class NoCooldown(Journey):
            async def plan(self, trigger: JourneyEvent) -> None:
                return None


def test_the_spec_names_steps_ids_and_policies() -> None:
    @journey(starts_on="viewed", ends_on=("left",), goals=("bought",), key="item_id", reentry=Reentry.ONCE)
    class PriceDropJourney(Journey):
        """Tells a viewer when the price drops."""

        price_drop = Step(via=("web_push", "email"), stage=Stage.CONSIDERATION)

        async def plan(self, trigger: JourneyEvent) -> None:
            await self.wait(timedelta(days=1))

    spec = PriceDropJourney.spec
    assert spec.name == "price_drop"
    assert spec.ends_on == ("left", "bought") and spec.goals == ("bought",)
    assert [s.name for s in spec.steps] == ["price_drop"]
    assert spec.workflow_id("c1", spec.entry_key({"item_id": 42})) == "price_drop:c1:42"
    assert spec.id_reuse_policy is WorkflowIDReusePolicy.REJECT_DUPLICATE
    assert spec.description == "Tells a viewer when the price drops."


@pytest.mark.parametrize(
    ("value", "as_int_", "as_number_"),
    [
        (12, 12, 12.0),
        (12.7, 12, 12.7),
        ("12", 12, 12.0),
        ("lots", 0, None),
        (None, 0, None),
        (True, 0, None),
        (1e100, 0, 1e100),
        (float("nan"), 0, None),
        ([1], 0, None),
    ],
)
def test_property_readers_never_raise(value: object, as_int_: int, as_number_: float | None) -> None:
    assert as_int(value) == as_int_
    assert as_number(value, None) == as_number_


def test_times_from_properties_are_aware_or_none() -> None:
    assert as_datetime("2026-12-01T10:00:00+07:00") == datetime(2026, 12, 1, 3, tzinfo=UTC)
    assert as_datetime("2026-12-01T10:00:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)  # naive: UTC
    assert as_datetime("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert [as_datetime(v) for v in ("soon", 12, None, "9" * 100)] == [None, None, None, None]
    assert as_text("a\r\nb\x00c") == "abc"
    assert as_text({"x": 1}) is None
