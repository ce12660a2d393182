"""The `@journey` declaration: what it derives, and the mistakes it refuses at import time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.common import WorkflowIDReusePolicy

from touchflow.workflows.base import Journey, JourneyEvent, Reentry, Stage, Step, journey


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
