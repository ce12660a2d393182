"""Record the histories that `test_replay.py` replays: run every built-in journey on the time-skipping server
with the real activities and a loopback SMTP, and save each run's history as JSON.

    .venv/bin/python -m tests.workflows.record_histories [--journey welcome]

Re-record only on purpose: the saved files stand for runs already in flight in production, which the current
code must still replay (see docs/journeys.md, "Changing a journey safely").
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

from tests.support import rows
from tests.support.probe import Probe
from touchflow.models import CustomerIn
from touchflow.testing import JourneyHarness, journey_harness, registry_of

HISTORIES = Path(__file__).parent / "histories"
CART = {
    "cart_id": "k1",
    "items": [{"name": "Mũ", "price": 750_000, "quantity": 1}],
    "total": 750_000,
    "currency": "VND",
    "cart_url": "https://shop.example/cart/k1",
}


async def save(handle: WorkflowHandle[Any, Any], name: str, run_id: str | None = None) -> None:
    if run_id is not None:
        handle = handle._client.get_workflow_handle(handle.id, run_id=run_id)
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"saved {name}.json ({len(history.events)} events)")


async def in_a_wait(h: JourneyHarness, handle: WorkflowHandle[Any, Any]) -> None:
    await h.state_when(handle, lambda s: " UTC" in s.detail or "up to" in s.detail)


async def welcome(h: JourneyHarness) -> None:
    h.store.customers.upsert(CustomerIn(id="w1", email="w1@example.com", locale="vi"))
    handle = await h.post("w1", "signed_up")
    assert handle is not None
    await in_a_wait(h, handle)
    await save(handle, "welcome_mid_wait")
    await h.outcome(handle)
    await save(handle, "welcome_completed")


async def abandoned_cart(h: JourneyHarness) -> None:
    h.store.customers.upsert(CustomerIn(id="a1", email="a1@example.com", locale="en"))
    handle = await h.post("a1", "cart_updated", CART)
    assert handle is not None
    await in_a_wait(h, handle)
    await save(handle, "abandoned_cart_mid_wait")
    await h.post("a1", "cart_updated", {**CART, "total": 1_500_000})
    await h.outcome(handle)
    await save(handle, "abandoned_cart_completed")
    converted = await h.post("a1", "cart_updated", {**CART, "cart_id": "k2"})
    assert converted is not None
    await in_a_wait(h, converted)
    await h.post("a1", "order_placed", {"order_id": "o-9", "cart_id": "k2"})
    await h.outcome(converted)
    await save(converted, "abandoned_cart_converted")


async def post_purchase(h: JourneyHarness) -> None:
    h.store.customers.upsert(CustomerIn(id="p1", email="p1@example.com", locale="en"))
    handle = await h.post("p1", "order_placed", {"order_id": "o-1", "total": 12.5, "currency": "USD"})
    assert handle is not None
    await in_a_wait(h, handle)
    await save(handle, "post_purchase_mid_wait")
    await h.env.sleep(timedelta(days=6))
    await h.state_when(handle, lambda s: "coupon" in s.sent)
    [coupon] = rows.coupons_of(h.store, "p1")
    await h.post("p1", "order_placed", {"order_id": "o-2", "coupon_code": coupon.code})
    await h.outcome(handle)
    await save(handle, "post_purchase_redeemed")


async def loyalty(h: JourneyHarness) -> None:
    h.store.customers.upsert(CustomerIn(id="l1", email="l1@example.com", locale="en"))
    await h.post("l1", "loyalty_points_changed", {"points": 4850})
    handle = h.handle("loyalty", "l1")
    await h.state_when(handle, lambda s: s.sent == ["tier_nudge"])
    first_run = (await handle.describe()).run_id
    await h.post("l1", "order_placed", {"order_id": "o-1"})
    await h.post("l1", "loyalty_points_changed", {"points": 4900})
    await h.post("l1", "loyalty_points_changed", {"points": 4950})
    await h.state_when(handle, lambda s: s.data.get("points") == 4950 and "up to" in s.detail)
    await save(handle, "loyalty_continued_as_new", run_id=first_run)
    await save(handle, "loyalty_mid_wait")


SCENARIOS: list[Callable[[JourneyHarness], Awaitable[None]]] = [
    welcome,
    abandoned_cart,
    post_purchase,
    loyalty,
]


async def main(journeys: list[str]) -> None:
    """Record the scenarios of the named journeys (all of them when none is named)."""
    unknown = set(journeys) - {scenario.__name__ for scenario in SCENARIOS}
    if unknown:
        raise SystemExit(
            f"no scenario for {', '.join(sorted(unknown))}; journeys: {[s.__name__ for s in SCENARIOS]}"
        )
    HISTORIES.mkdir(exist_ok=True)
    # Loyalty continues-as-new after three events here, so its saved histories include one that did.
    registry = registry_of(Probe, builtins=True, params={"loyalty_events_per_run": "3"})
    async with journey_harness(registry, secret_key="record-histories-secret-key") as (harness, _):
        for scenario in SCENARIOS:
            if not journeys or scenario.__name__ in journeys:
                await scenario(harness)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--journey", action="append", default=[], help="record only this journey (repeatable)"
    )
    asyncio.run(main(parser.parse_args().journey))
