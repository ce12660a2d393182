"""analytics.js (`@segment/analytics-next`, from tests/clients/package-lock.json) in Debian's Chromium, on a
shop page whose `apiHost` is touchflow: a page view, a `cart_updated` and an identify arrive, and the merge
hands the cart the visitor filled before logging in to the known customer, who is reminded by email.

Needs Debian's chromium (`apt-get install -y chromium`) and npm; without them this skips, or fails when CI
is set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import customer_token
from tests.clients.drivers import chromium, outside_requests, serve_analytics_next
from tests.clients.test_server_libraries import shop_api
from tests.conftest import API_KEY
from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.settings import Settings
from touchflow.temporal import free_port
from touchflow.testing import JourneyHarness, SmtpInbox, eventually

pytestmark = pytest.mark.browser

PAGE_PORT = free_port()
# What a shop puts in its pages: a key that may only track (README: Send events from Segment-compatible
# libraries).
PAGE_KEY = "tfk_shop_page_key_for_analytics_js_01"


@pytest.fixture
def make_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """The shop's page on PAGE_PORT may send (CORS); the first cart reminder after an hour."""

    def settings(**overrides: Any) -> Settings:
        values = {
            "track_allowed_origins": [f"http://127.0.0.1:{PAGE_PORT}"],
            "cart_reminder_delay": "1h",
            "api_keys": [API_KEY, f"track:{PAGE_KEY}"],
        }
        return make_settings(**(values | overrides))

    return settings


async def test_a_visitor_fills_a_cart_logs_in_and_is_reminded_by_email(
    journeys: JourneyHarness, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    store = journeys.store
    async with (
        shop_api(journeys, make_settings) as shop,
        serve_analytics_next(PAGE_KEY, shop.url, port=PAGE_PORT) as page_url,
        chromium() as browser,
    ):
        context = await browser.new_context()
        outside = outside_requests(context)
        page = await context.new_page()
        await page.goto(page_url)
        await page.wait_for_function("window.analyticsReady === true")
        anonymous_id = await page.evaluate("analytics.user().anonymousId()")
        visitor = f"anon:{anonymous_id}"

        async def viewed() -> bool:
            return any(e.name == "page_viewed" for e in store.events.of_customer(visitor))

        await eventually(viewed, 10, "the page view")
        cart = {
            "cart_id": "web-cart-1",
            "total": 350000,
            "currency": "VND",
            "items": [{"sku": "ao-1", "qty": 1}],
        }
        await page.evaluate("cart => analytics.track('cart_updated', cart)", cart)

        async def cart_started() -> bool:
            await shop.relay()
            return any(
                entry.journey == "abandoned_cart"
                for entry in store.journeys.active_entries("abandoned_cart", visitor)
            )

        await eventually(cart_started, 10, "the abandoned cart journey of the anonymous visitor")

        # The visitor logs in as a customer the shop knows: the page identifies them with their token (the
        # inbox token of the id, which the shop's backend renders into the page), the anonymous id beside.
        store.customers.upsert(CustomerIn(id="web-1", email="lan.web@example.vn"))
        await page.evaluate(
            "token => analytics.identify('web-1', {firstName: 'Lan'}, {context: {touchflow_token: token}})",
            customer_token("web-1"),
        )

        async def merged() -> bool:
            customer = store.customers.get("web-1")
            return (
                customer is not None
                and customer.email == "lan.web@example.vn"
                and not any(True for _ in store.events.of_customer(visitor))
            )

        await eventually(merged, 10, "the visitor merged into web-1")
        assert {e.name for e in store.events.of_customer("web-1")} >= {"page_viewed", "cart_updated"}
        page_view = next(e for e in store.events.of_customer("web-1") if e.name == "page_viewed")
        assert page_view.context is not None and page_view.context["library"]["name"] == "analytics.js"
        assert outside == []

    # An hour on, the cart the visitor filled is reminded to the customer they turned out to be, once.
    await journeys.skip(timedelta(hours=1, minutes=1))
    [mail] = await smtp.wait_for(1)
    assert mail["To"] == "lan.web@example.vn"
    reminders = [d for d in journeys.deliveries("web-1") if d.step == "cart_reminder_1"]
    assert [(d.channel, d.status) for d in reminders] == [("email", DeliveryStatus.SENT)]
    assert [e.journey for e in store.journeys.active_entries("abandoned_cart", "web-1")] == ["abandoned_cart"]
