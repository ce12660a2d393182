"""Segment's own server libraries, pointed at touchflow, start journeys: `segment-analytics-python` (PyPI) and
`@segment/analytics-node` (npm, from tests/clients/package-lock.json). Nothing stands in for them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from tests.clients.drivers import flush, run_node, segment_client
from tests.conftest import API_KEY
from tests.support.server import serving
from touchflow.api.main import create_app
from touchflow.settings import Settings
from touchflow.testing import JourneyHarness, SmtpInbox, eventually


@dataclass
class Shop:
    url: str
    journeys: JourneyHarness

    async def relay(self) -> None:
        """What the API's relay does in production: the stored events go to their journeys."""
        while await self.journeys.relay.relay_once():
            pass


@contextlib.asynccontextmanager
async def shop_api(journeys: JourneyHarness, make_settings: Callable[..., Settings]) -> AsyncIterator[Shop]:
    """The API on the harness's store under uvicorn; the harness's relay routes what it stores."""
    app = create_app(make_settings(database_url=str(journeys.store.engine.url)), run_relay=False)
    app.state.relay = journeys.relay
    async with serving(app) as url:
        yield Shop(url, journeys)


@pytest.fixture
async def shop(journeys: JourneyHarness, make_settings: Callable[..., Settings]) -> AsyncIterator[Shop]:
    async with shop_api(journeys, make_settings) as running:
        yield running


async def welcomed(shop: Shop, smtp: SmtpInbox, customer_id: str, email: str) -> None:
    """The welcome email reached `email`, and the customer's profile holds what identify sent."""

    async def arrived() -> bool:
        await shop.relay()
        return any(message["To"] == email for message in smtp.messages)

    await eventually(arrived, 20, f"the welcome email to {email}")
    customer = shop.journeys.store.customers.get(customer_id)
    assert customer is not None and customer.email == email
    assert customer.attributes["first_name"] == "Lan"


async def test_analytics_python_identify_and_track_start_the_welcome_journey(
    shop: Shop, smtp: SmtpInbox
) -> None:
    client = segment_client(shop.url, API_KEY)
    client.identify("py-1", {"email": "lan.py@example.vn", "firstName": "Lan", "plan": "gold"})
    client.track("py-1", "signed_up", {"source": "app"}, message_id="py-signup-1")
    await flush(client)
    await welcomed(shop, smtp, "py-1", "lan.py@example.vn")

    # The library resends a batch it thinks failed: the same messageId is stored once, and no second email.
    client.track("py-1", "signed_up", {"source": "app"}, message_id="py-signup-1")
    await flush(client)
    await shop.relay()
    events = [e for e in shop.journeys.store.events.of_customer("py-1") if e.name == "signed_up"]
    assert [e.id for e in events] == ["py-signup-1"]
    assert events[0].context is not None and events[0].context["library"]["name"] == "analytics-python"
    await asyncio.sleep(0.5)  # time for a second email to arrive, were one sent: none may
    assert sum(message["To"] == "lan.py@example.vn" for message in smtp.messages) == 1


NODE_SCRIPT = """
const { Analytics } = require("@segment/analytics-node");
const analytics = new Analytics({ writeKey: process.env.WRITE_KEY, host: process.env.HOST, flushAt: 10 });
analytics.identify({ userId: "node-1", traits: { email: "lan.node@example.vn", firstName: "Lan" } });
for (const attempt of [1, 2]) {
  // the same messageId twice: what a resent batch carries
  analytics.track({ userId: "node-1", event: "signed_up", messageId: "node-signup-1" });
}
analytics.closeAndFlush({ timeout: 10000 }).then(() => console.log(JSON.stringify({ flushed: true })));
"""


async def test_analytics_node_identify_and_track_start_the_welcome_journey(
    shop: Shop, smtp: SmtpInbox
) -> None:
    done = await run_node(NODE_SCRIPT, {"WRITE_KEY": API_KEY, "HOST": shop.url})
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"flushed": True}
    await welcomed(shop, smtp, "node-1", "lan.node@example.vn")
    events = [e for e in shop.journeys.store.events.of_customer("node-1") if e.name == "signed_up"]
    assert [e.id for e in events] == ["node-signup-1"]
