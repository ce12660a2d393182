"""A shop's own journey through the public surface: its activity, its coupon, a goal that is its trigger."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import rows
from tests.support.shop_journeys import WinBack
from touchflow.testing import JourneyHarness, SmtpInbox, registry_of
from touchflow.workflows.registry import Registry


@pytest.fixture
def journey_registry() -> Registry:
    # The built-ins run too: a shop's journey sits beside them, and the loyalty journey also starts on orders.
    return registry_of(WinBack, builtins=True, params={"win_back_amount": "75000"})


async def test_the_order_that_starts_a_win_back_is_not_its_goal(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.customer("w1", email="w1@example.com", locale="en")
    await journeys.post("w1", "order_placed", {"order_id": "o-1", "total": 10, "currency": "USD"})
    run = journeys.handle("win_back", "w1")

    outcome = await journeys.outcome(run)
    assert (
        outcome.status == "completed"
    )  # not "converted" by its own trigger, neither in the run nor the guard
    [offer] = [m for m in smtp.messages if str(m["Subject"]).startswith("We miss you")]
    # Its own activity (the category) and its own coupon value and unit, from the declared parameter.
    assert offer["Subject"] == "We miss you: ₫75,000 off nón lá"
    [coupon] = [c for c in rows.coupons_of(journeys.store, "w1") if c.journey == "win_back"]
    assert (coupon.value, coupon.unit) == (75_000, "VND")
    assert coupon.code in smtp.text(smtp.messages.index(offer))
    [delivery] = [d for d in journeys.deliveries("w1") if d.journey == "win_back"]
    assert delivery.status == "sent"


async def test_a_later_order_is_the_goal(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.customer("w2", email="w2@example.com", locale="en")
    await journeys.post("w2", "order_placed", {"order_id": "o-1"})
    run = journeys.handle("win_back", "w2")
    await journeys.state_when(run, lambda s: s.detail.startswith("waiting"))
    await journeys.skip(timedelta(days=3))
    await journeys.post("w2", "order_placed", {"order_id": "o-2"})

    outcome = await journeys.outcome(run)
    assert (outcome.status, outcome.ended_by) == ("converted", "order_placed")
    assert not [m for m in smtp.messages if str(m["Subject"]).startswith("We miss you")]
    assert not [c for c in rows.coupons_of(journeys.store, "w2") if c.journey == "win_back"]
