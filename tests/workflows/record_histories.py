"""Record the histories that `test_replay.py` replays: run every built-in journey on the time-skipping server
with the real activities and a loopback SMTP, and save each run's history as JSON.

    .venv/bin/python -m tests.workflows.record_histories

Re-record only on purpose: the saved files stand for runs already in flight in production, which the current
code must still replay (see docs/journeys.md, "Changing a journey safely").
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.conftest import SmtpInbox, _binary
from tests.support.harness import TEMPLATES, TEST_REGISTRY, JourneyHarness
from touchflow.db import make_engine, migrate
from touchflow.models import CustomerIn
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.store import Store
from touchflow.temporal import ensure_search_attributes, free_port
from touchflow.worker import build_activities, build_worker

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
    h.store.upsert_customer(CustomerIn(id="w1", email="w1@example.com", locale="vi"))
    handle = await h.post("w1", "signed_up")
    assert handle is not None
    await in_a_wait(h, handle)
    await save(handle, "welcome_mid_wait")
    await h.outcome(handle)
    await save(handle, "welcome_completed")


async def abandoned_cart(h: JourneyHarness) -> None:
    h.store.upsert_customer(CustomerIn(id="a1", email="a1@example.com", locale="en"))
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
    h.store.upsert_customer(CustomerIn(id="p1", email="p1@example.com", locale="en"))
    handle = await h.post("p1", "order_placed", {"order_id": "o-1", "total": 12.5, "currency": "USD"})
    assert handle is not None
    await in_a_wait(h, handle)
    await save(handle, "post_purchase_mid_wait")
    await h.env.sleep(timedelta(days=6))
    await h.state_when(handle, lambda s: "coupon" in s.sent)
    [coupon] = h.store.customer_coupons("p1")
    await h.post("p1", "order_placed", {"order_id": "o-2", "coupon_code": coupon.code})
    await h.outcome(handle)
    await save(handle, "post_purchase_redeemed")


async def loyalty(h: JourneyHarness) -> None:
    h.store.upsert_customer(CustomerIn(id="l1", email="l1@example.com", locale="en"))
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


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/touchflow.db")
        migrate(engine)
        store = Store(engine)
        inbox = SmtpInbox(host="127.0.0.1", port=free_port())
        smtp = Controller(inbox, hostname=inbox.host, port=inbox.port)
        smtp.start()
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=_binary("temporal-test-server")
        )
        try:
            await ensure_search_attributes(env.client)
            settings = Settings.model_validate(
                {
                    "home": Path(tmp) / ".touchflow",
                    "secret_key": "record-histories-secret-key",
                    "public_url": "https://shop.example",
                    "smtp_host": inbox.host,
                    "smtp_port": inbox.port,
                    "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
                    "templates_dir": TEMPLATES,
                    "loyalty_events_per_run": 3,
                }
            )

            async def connect() -> Any:
                return env.client

            relay = Relay(store, connect, settings.task_queue, settings.relay_interval, 100, TEST_REGISTRY)
            worker = build_worker(
                env.client, settings, build_activities(settings, store), TEST_REGISTRY.values()
            )
            async with worker:
                harness = JourneyHarness(env, store, settings, relay)
                for scenario in SCENARIOS:
                    await scenario(harness)
        finally:
            await env.shutdown()
            smtp.stop()
            engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
