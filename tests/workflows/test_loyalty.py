"""The loyalty journey: points and tier from events, the three nudges, the cap, continue-as-new."""

from __future__ import annotations

from datetime import timedelta

import pytest

from touchflow.models import CustomerIn
from touchflow.testing import JourneyHarness, SmtpInbox, eventually, registry_of
from touchflow.workflows.loyalty import Loyalty
from touchflow.workflows.registry import Registry


@pytest.fixture
def journey_registry() -> Registry:
    # Continue-as-new after three events, so a test sees it; tiers silver 1000, gold 5000 (the default).
    return registry_of(Loyalty, params={"loyalty_events_per_run": "3"})


async def test_tier_nudge_then_capped_expiry_warning_then_winback(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(CustomerIn(id="l1", email="l1@example.com", locale="en"))
    await journeys.post("l1", "loyalty_points_changed", {"points": 4850})
    handle = journeys.handle("loyalty", "l1")
    state = await journeys.state_when(handle, lambda s: s.sent == ["tier_nudge"])
    assert state.data["tier"] == "silver"
    assert (state.data["next_tier"], state.data["points_to_next_tier"]) == ("gold", 150)
    assert smtp.messages[0]["Subject"] == "Only 150 points to Gold"

    # Points about to expire, but a nudge went out just now: the warning waits for the cap to lift.
    now = await journeys.env.get_current_time()
    expiring = {
        "points": 4850,
        "expiring_points": 300,
        "points_expire_at": (now + timedelta(days=10)).isoformat(),
    }
    await journeys.post("l1", "loyalty_points_changed", expiring)
    state = await journeys.state_when(
        handle, lambda s: s.data["expiring_points"] == 300 and "up to" in s.detail
    )
    assert state.sent == ["tier_nudge"]
    await journeys.env.sleep(timedelta(days=7, hours=1))
    await journeys.state_when(handle, lambda s: s.sent == ["tier_nudge", "points_expiring"])
    assert smtp.messages[1]["Subject"] == "300 points expire soon"

    # Sixty days without activity: the win-back, with the balance.
    await journeys.env.sleep(timedelta(days=55))
    await journeys.state_when(handle, lambda s: s.sent[-1] == "winback")
    assert "Your 4,850 points are waiting" in smtp.messages[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_continue_as_new_keeps_points_tier_and_what_was_nudged(journeys: JourneyHarness) -> None:
    journeys.store.customers.upsert(CustomerIn(id="l2", email="l2@example.com", locale="vi"))
    await journeys.post("l2", "loyalty_points_changed", {"points": 4850})
    handle = journeys.handle("loyalty", "l2")
    await journeys.state_when(handle, lambda s: s.sent == ["tier_nudge"])
    first_run = (await handle.describe()).run_id

    await journeys.post("l2", "order_placed", {"order_id": "o-1", "total": 100})
    await journeys.post("l2", "loyalty_points_changed", {"points": 4900, "tier": "silver"})
    await journeys.post("l2", "loyalty_points_changed", {"points": 4950})

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await eventually(continued, timeout=10, what="the run to continue as new")
    state = await journeys.state_when(handle, lambda s: s.data["points"] == 4950)
    assert state.data["tier"] == "silver"
    assert state.sent == ["tier_nudge"]  # still 50 points from gold, but that nudge was given already
    tier_nudges = [d for d in journeys.store.deliveries.of_customer("l2") if d.step == "tier_nudge"]
    assert len(tier_nudges) == 1


@pytest.mark.parametrize(
    "poison",
    [
        {"points": "lots", "expiring_points": "lots", "points_expire_at": "soon"},
        {"points": 1e100, "expiring_points": None, "points_expire_at": 12},
        {
            "points": [1],
            "tier": {"x": 1},
            "expiring_points": "300",
            "points_expire_at": "2030-01-01T00:00:00",
        },
    ],
)
async def test_a_poisoned_event_never_stalls_the_run(
    journeys: JourneyHarness, poison: dict[str, object]
) -> None:
    """Untrusted properties are ignored, not raised on: the run takes the next good event as before."""
    journeys.customer("l3", email="l3@example.com", locale="en")
    await journeys.post("l3", "loyalty_points_changed", {"points": 100})
    handle = journeys.handle("loyalty", "l3")
    await journeys.state_when(handle, lambda s: s.data.get("points") == 100)
    await journeys.post("l3", "loyalty_points_changed", poison)
    await journeys.post("l3", "loyalty_points_changed", {"points": 4850})
    state = await journeys.state_when(handle, lambda s: s.data.get("points") == 4850)
    assert state.data["tier"] == "silver"
    history = await handle.fetch_history()
    assert not [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
