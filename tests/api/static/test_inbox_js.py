"""inbox.js in a real headless Chromium: a page on one loopback origin embeds the script from the API on
another, and a message the onsite channel stores shows up live on the bell and in the dropdown.

Needs Debian's chromium (`apt-get install -y chromium`); without it this skips, or fails when CI is set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from html import escape
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.api.conftest import RunningApi, customer_token, running_api
from tests.clients.drivers import CHROMIUM, CHROMIUM_ARGS
from tests.support.server import serving
from touchflow.activities.inbox import StoreInbox
from touchflow.channels import OutboundMessage
from touchflow.channels.onsite import Onsite
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import free_port
from touchflow.testing import eventually

pytestmark = pytest.mark.browser

HOW_TO_INSTALL = (
    "Chromium is missing at /usr/bin/chromium: install it with "
    "`apt-get update && apt-get install -y chromium` (as root), then run `pytest -m browser`"
)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(HOW_TO_INSTALL)
    pytest.skip(HOW_TO_INSTALL)


def shop_page(api_url: str, customer: str) -> Starlette:
    """The brand's site: a page that includes the script with its customer and token (`/header`: in a
    header element of its own, by `data-target`)."""

    def page(target: str) -> str:
        tag = (
            f'<script src="{escape(api_url)}/inbox.js" async data-customer="{escape(customer)}" '
            f'data-token="{customer_token(customer)}"{target}></script>'
        )
        header = '<header><span id="bell-here"></span></header>'
        return f"<!doctype html><meta charset=utf-8><title>Shop</title>{header}<h1>Shop</h1>{tag}"

    async def home(_: object) -> HTMLResponse:
        return HTMLResponse(page(""))

    async def in_header(_: object) -> HTMLResponse:
        return HTMLResponse(page(' data-target="#bell-here"'))

    async def anonymous(_: object) -> HTMLResponse:
        # What analytics.js keeps (JSON-encoded, as it writes it); the backend minted the visitor's token.
        remember = "<script>localStorage.setItem('ajs_anonymous_id', JSON.stringify('visitor-1'))</script>"
        tag = (
            f'<script src="{escape(api_url)}/inbox.js" async '
            f'data-token="{customer_token("anon:visitor-1")}"></script>'
        )
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>Shop</title>{remember}{tag}")

    async def no_icon(_: object) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/header", in_header),
            Route("/anonymous", anonymous),
            Route("/favicon.ico", no_icon),
        ]
    )


@contextlib.asynccontextmanager
async def serve_site(
    make_settings: Callable[..., Settings], store: Store, **settings: Any
) -> AsyncIterator[tuple[str, RunningApi]]:
    """(the shop page's URL, the API it embeds the inbox from), on two loopback origins."""
    _require_chromium()
    site_port = free_port()
    origin = f"http://127.0.0.1:{site_port}"
    db_url = str(store.engine.url)
    async with (
        running_api(
            make_settings, db_url, inbox_poll_interval="100ms", inbox_allowed_origins=[origin], **settings
        ) as api,
        serving(shop_page(api.url, "b1"), port=site_port) as url,
    ):
        yield url + "/", api


@pytest.fixture
async def site(
    make_settings: Callable[..., Settings], sqlite_store: Store
) -> AsyncIterator[tuple[str, RunningApi]]:
    async with serve_site(make_settings, sqlite_store) as found:
        yield found


async def deliver(api: RunningApi, key: str, **content: str) -> None:
    """Store a message the way the onsite channel does in the worker."""
    message = OutboundMessage(key=key, address="b1", content=content)
    await Onsite(StoreInbox(api.store)).send(message)


async def test_bell_and_dropdown_update_live(site: tuple[str, RunningApi]) -> None:
    from playwright.async_api import async_playwright, expect

    url, api = site
    await deliver(api, "old", title="Welcome", body="Glad you are here", url="/welcome")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            await page.goto(url)

            bell = page.locator(".tf-bell")
            count = page.locator(".tf-count")
            await expect(count).to_have_text("1", timeout=5000)
            await expect(page.locator(".tf-item")).to_have_count(1)

            # Live: stored by "another process", on the bell and in the list within a second.
            await deliver(
                api,
                "new",
                title='<img src=x onerror="window.pwned=1">Sale',
                body="50% off <script>window.pwned=1</script>",
                url="https://shop.example/sale",
            )
            await expect(count).to_have_text("2", timeout=1000)
            newest = page.locator(".tf-item").first
            await expect(newest.locator(".tf-title")).to_have_text(
                '<img src=x onerror="window.pwned=1">Sale', timeout=1000
            )
            await expect(newest.locator(".tf-body")).to_have_text("50% off <script>window.pwned=1</script>")
            await expect(newest.locator("a.tf-entry")).to_have_attribute("href", "https://shop.example/sale")
            assert await page.locator("[data-touchflow-inbox] img").count() == 0
            assert await page.evaluate("window.pwned") is None

            # Opening the dropdown shows the messages and marks them read, on the page and in the store.
            await bell.click()
            await expect(page.locator(".tf-panel")).to_be_visible()
            await expect(page.locator(".tf-item .tf-title")).to_have_text(
                ['<img src=x onerror="window.pwned=1">Sale', "Welcome"]
            )
            await expect(count).to_be_hidden(timeout=2000)
            await eventually(lambda: api.store.inbox.unread_count("b1") == 0, 5, "the messages to be read")

            # A message arriving while the dropdown is open is shown and read at once.
            await deliver(api, "third", title="Back in stock", body="Your size is back")
            await expect(page.locator(".tf-item").first.locator(".tf-title")).to_have_text(
                "Back in stock", timeout=1000
            )
            await eventually(lambda: api.store.inbox.unread_count("b1") == 0, 5, "the messages to be read")
            assert problems == []
            # The customer token went in headers only; the stream opened with a ticket.
            assert not [u for u in urls if customer_token("b1") in u]
            assert [u for u in urls if "/v1/inbox/stream?ticket=" in u]
        finally:
            await browser.close()


async def test_a_dangerous_link_is_not_rendered_as_one(site: tuple[str, RunningApi]) -> None:
    from playwright.async_api import async_playwright, expect

    url, api = site
    # Past the channel's own check (written straight to the store): the script still refuses the link.
    api.store.inbox.add(
        key="js", customer_id="b1", title="Click me", body="x", action_url="javascript:window.pwned=1"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url)
            await expect(page.locator(".tf-count")).to_have_text("1", timeout=5000)
            await page.locator(".tf-bell").click()
            entry = page.locator(".tf-item .tf-entry")
            await expect(entry).to_have_text(
                "Click me", timeout=1000, use_inner_text=False
            ) if False else None
            await expect(entry.locator(".tf-title")).to_have_text("Click me")
            assert await page.locator(".tf-item a").count() == 0
            await entry.click()
            assert await page.evaluate("window.pwned") is None
        finally:
            await browser.close()


async def test_older_pages_and_a_target_element(site: tuple[str, RunningApi]) -> None:
    from playwright.async_api import async_playwright, expect

    url, api = site
    for n in range(25):
        await deliver(api, f"m{n}", title=f"Message {n}", body="x")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url + "header")
            await expect(page.locator("#bell-here .tf-count")).to_have_text("25", timeout=5000)
            await page.locator(".tf-bell").click()
            items = page.locator(".tf-item .tf-title")
            await expect(items).to_have_count(20)
            await expect(items.first).to_have_text("Message 24")
            await page.locator(".tf-more").click()
            await expect(items).to_have_count(25)
            await expect(items.last).to_have_text("Message 0")
            await expect(page.locator(".tf-more")).to_be_hidden()
            await eventually(lambda: api.store.inbox.unread_count("b1") == 0, 5, "the messages to be read")
            await expect(page.locator(".tf-count")).to_be_hidden()
        finally:
            await browser.close()


async def test_updates_stay_live_after_the_stream_ends_and_its_ticket_expires(
    make_settings: Callable[..., Settings], sqlite_store: Store
) -> None:
    """Streams end at their age; EventSource alone would reopen with the expired ticket and be refused."""
    from playwright.async_api import async_playwright, expect

    short = {"inbox_stream_max_age": "1s", "inbox_ticket_ttl": "1s"}
    async with (
        serve_site(make_settings, sqlite_store, **short) as (url, api),
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            tickets: list[str] = []
            page.on("request", lambda r: tickets.append(r.url) if "stream-tickets" in r.url else None)
            await page.goto(url)
            await expect(page.locator("[data-touchflow-inbox]")).to_have_count(1)
            await eventually(lambda: len(tickets) >= 3, 15, "the page to open its stream three times")
            await deliver(api, "late", title="Still live", body="after two streams ended")
            await expect(page.locator(".tf-count")).to_have_text("1", timeout=5000)
            await page.locator(".tf-bell").click()
            await expect(page.locator(".tf-item .tf-title")).to_have_text(["Still live"])
        finally:
            await browser.close()


async def test_an_anonymous_visitors_inbox_is_that_of_analytics_js_anonymous_id(
    site: tuple[str, RunningApi],
) -> None:
    """Without data-customer the script opens the inbox of `anon:<ajs_anonymous_id>`."""
    from playwright.async_api import async_playwright, expect

    url, api = site
    await Onsite(StoreInbox(api.store)).send(
        OutboundMessage(key="v-1", address="anon:visitor-1", content={"title": "Giỏ hàng", "body": "..."})
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url + "anonymous")
            await expect(page.locator(".tf-count")).to_have_text("1", timeout=5000)
        finally:
            await browser.close()
