"""Store-then-relay: events accepted while Temporal is down reach their journeys once it is back, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from tests.support.harness import TEST_REGISTRY
from touchflow.api.main import create_app
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import DevServer, connect, free_port
from touchflow.testing import SmtpInbox, eventually
from touchflow.worker import build_activities, build_worker

pytestmark = pytest.mark.e2e

CUSTOMERS = [f"c{i:02d}" for i in range(20)]


def signup(customer: str) -> dict[str, str]:
    return {"id": f"su-{customer}", "customer_id": customer, "name": "signed_up"}


async def test_events_posted_while_temporal_is_down_start_each_journey_once(
    tmp_path: Path, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    temporal = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'touchflow.db'}",
        temporal_address=temporal.address,
        smtp_port=smtp.port,
        relay_interval="100ms",
    )
    app = create_app(settings)
    store: Store = app.state.store
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        # Temporal is not running yet: every event is still accepted and kept.
        for customer in CUSTOMERS:
            api.post("/v1/customers", json={"id": customer, "email": f"{customer}@example.com"})
            assert api.post("/v1/events", json=signup(customer)).json()["status"] == "accepted"
        # A client retrying half of them changes nothing.
        for customer in CUSTOMERS[:10]:
            assert api.post("/v1/events", json=signup(customer)).json()["status"] == "duplicate"
        assert store.outbox.size() == len(CUSTOMERS)

        await temporal.start()
        try:
            client = await connect(settings)
            async with build_worker(
                client, settings, build_activities(settings, TEST_REGISTRY, store), TEST_REGISTRY
            ):
                await eventually(lambda: store.outbox.size() == 0, 60, "the relay to drain the outbox")
                await smtp.wait_for(len(CUSTOMERS), timeout=60)

                # Temporal goes away and comes back (same state file): nothing runs twice.
                temporal.stop()
                api.post("/v1/events", json={"id": "late", "customer_id": "late", "name": "signed_up"})
                await temporal.start()
                await eventually(
                    lambda: store.outbox.size() == 0, 60, "the relay to catch up after a restart"
                )

                expected = len(CUSTOMERS) + 1
                ids: list[str] = []

                async def all_listed() -> bool:
                    # The visibility store (what list_workflows reads) trails the executions by a moment.
                    ids[:] = sorted([e.id async for e in client.list_workflows("WorkflowType = 'welcome'")])
                    return len(ids) >= expected

                await eventually(all_listed, timeout=10, what="every run to be listed")
        finally:
            temporal.stop()

    assert ids == sorted([f"welcome:{c}" for c in CUSTOMERS] + ["welcome:late"])
    recipients = sorted(rcpt for _, [rcpt] in smtp.envelopes)
    assert recipients == sorted(f"{c}@example.com" for c in CUSTOMERS)
    for customer in CUSTOMERS:
        # One welcome email each (the series' inbox step may still be on its way: not counted here).
        assert [d.step for d in store.deliveries.of_customer(customer) if d.step == "welcome"] == ["welcome"]
