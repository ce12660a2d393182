"""The dashboard in Debian's headless Chromium through Playwright, as a marketer uses it: sign in, open each
page, read the seeded scenario's figures off the page; a screenshot of each page is saved under the test's
tmp path (the paths are printed). Needs /usr/bin/chromium; without it this skips, or fails when CI is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clients.drivers import chromium, outside_requests
from tests.conftest import API_KEY
from tests.support.insight import FEATURED, REGISTRY, seed
from tests.support.server import serving
from touchflow.api.main import create_app
from touchflow.db import make_engine, migrate
from touchflow.settings import Settings

pytestmark = pytest.mark.browser


async def test_a_marketer_reads_the_dashboard(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    app = create_app(make_settings(database_url=url), REGISTRY, run_relay=False)
    shots: list[Path] = []
    async with serving(app) as base, chromium() as browser:
        seed(app.state.store)
        context = await browser.new_context(viewport={"width": 1300, "height": 900})
        outside = outside_requests(context)
        context.set_default_timeout(5000)
        page = await context.new_page()

        async def shot(name: str) -> None:
            path = tmp_path / f"{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        async def figure(selector: str) -> str:
            return " ".join((await page.locator(selector).text_content() or "").split())

        await page.goto(f"{base}/dashboard/journeys/winback")
        assert "/dashboard/login" in page.url
        await shot("login")
        await page.fill("input[name=api_key]", API_KEY)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/dashboard/journeys/winback")
        assert await figure("p [data-figure=entered]") == "400"
        assert await figure("p [data-figure=revenue]") == "8,160.00"
        assert await figure("[data-step=product_picks] text[data-figure=sent]") == "240"
        assert await figure("[data-step=win_offer] [data-figure=to_next]") == "75.0%"
        assert "biggest drop-off" in await figure("[data-step=win_offer] .to-next")
        assert "Variant b wins" in await figure("[data-experiment=subject_line] .verdict")
        assert "No significant difference" in await figure("[data-experiment=picks_layout] .verdict")
        await shot("journey-map")

        await page.click("text=Journeys")
        await page.wait_for_url(f"{base}/dashboard?range=30d")  # the period goes along: 30 days by default
        assert await figure("[data-journey=winback] [data-figure=conversion_rate]") == "30.5%"
        assert await figure("[data-broadcast=december] [data-figure=revenue]") == "200.00"
        await shot("overview")

        await page.click("text=last 7d")
        await page.wait_for_url("**/dashboard?range=7d")
        assert await figure("[data-journey=winback] [data-figure=entered]") == "0"  # they entered 10 days ago
        assert await figure("[data-broadcast=december] [data-figure=attributed_conversions]") == "5"

        await page.click("text=Stages")
        await page.wait_for_url("**/dashboard/stages?range=7d")
        assert await figure("[data-stage=retention] [data-figure=customers]") == "50"
        await shot("stages")

        await page.fill("input[name=q]", "c203@example.com")
        await page.press("input[name=q]", "Enter")
        await page.wait_for_url(f"**/dashboard/customers/{FEATURED}")
        assert await figure("[data-figure=lifecycle_stage]") == "customer"
        assert await figure("[data-kind=touchpoint] [data-figure=outcome]") == "converted"
        await shot("customer")

        await page.click("text=Sign out")
        await page.wait_for_url("**/dashboard/login")
        await page.goto(f"{base}/dashboard")
        assert "/dashboard/login" in page.url
        assert outside == []  # nothing loaded from elsewhere: the pages work offline
        await context.close()
    for path in shots:
        print(f"screenshot: {path}")
