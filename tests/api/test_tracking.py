"""Opens and clicks: from a real email's links and pixel to the journey's funnel."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from tests.conftest import API_KEY, SECRET
from touchflow.api.main import create_app
from touchflow.models import CustomerIn, Delivery, Engagement
from touchflow.settings import Settings
from touchflow.signing import Purpose, Signer
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox


async def test_an_emails_pixel_and_link_count_in_the_funnel(
    journeys: JourneyHarness, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    for customer in ("t1", "t2"):
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
        handle = await journeys.post(customer, "signed_up")
        await journeys.state_when(handle, lambda s: len(s.sent) == 2)
    # t2 reads the welcome message in the onsite inbox: that counts as opening that step
    [inbox_message] = journeys.store.inbox.list("t2").messages
    journeys.store.inbox.mark("t2", inbox_message.id or 0, "read")
    html = smtp.messages[0].get_body(("html",)).get_content()
    [pixel] = re.findall(r'src="https://shop\.example(/t/o/[^"]+\.gif)"', html)
    [link] = re.findall(r'href="https://shop\.example(/t/c/[^"]+)"', html)

    app = create_app(make_settings(database_url=str(journeys.store.engine.url)), run_relay=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        for _ in range(2):  # opened twice: still one opened message
            seen = api.get(pixel)
            assert seen.status_code == 200 and seen.headers["content-type"] == "image/gif"
        click = api.get(link, follow_redirects=False)
        assert click.status_code == 302 and click.headers["location"] == "https://shop.example"
        funnel = api.get("/v1/journeys/welcome/funnel").json()
    steps = {s["step"]: s for s in funnel["steps"]}
    assert (steps["welcome"]["sent"], steps["welcome"]["opened"], steps["welcome"]["clicked"]) == (2, 1, 1)
    assert (steps["welcome_inbox"]["sent"], steps["welcome_inbox"]["opened"]) == (2, 1)


def test_forged_links_redirect_nowhere_and_record_nothing(api: TestClient) -> None:
    forged = Signer("another-secret-key").sign(Purpose.CLICK, "1|https://evil.example")
    assert api.get(f"/t/c/{forged}", follow_redirects=False).status_code == 404
    # an open token is no click token, even when it is genuine
    not_a_click = Signer(SECRET).sign(Purpose.OPEN, "1")
    assert api.get(f"/t/c/{not_a_click}", follow_redirects=False).status_code == 404
    assert api.get("/t/o/garbage.gif").status_code == 200  # the pixel shows either way


@pytest.fixture
def api_settings() -> dict[str, str]:
    return {"link_domains": "shop.example, *.shop.example"}


def test_a_link_signed_for_another_domain_is_not_redirected(api: TestClient, store: Store) -> None:
    """TOUCHFLOW_LINK_DOMAINS holds at the redirect too: a link signed before it was set goes nowhere."""
    delivery = store.deliveries.claim(
        Delivery(key="j:c1:1:s", journey="j", customer_id="c1", step="s", workflow_id="j:c1")
    )
    signer = Signer(SECRET)
    cases = {
        "https://shop.example/cart": 302,
        "https://www.shop.example/cart": 302,
        "https://evil.example/": 404,
        "https://shop.example.evil.example/": 404,
        "https://evil.example\\@shop.example/": 404,
        "javascript:alert(1)//https://shop.example/": 404,
        "http:evil.example": 404,
    }
    for url, status in cases.items():
        token = signer.sign(Purpose.CLICK, f"{delivery.id}|{url}")
        response = api.get(f"/t/c/{token}", follow_redirects=False)
        assert response.status_code == status, url
        if status == 302:
            assert response.headers["location"] == url
    with Session(store.engine) as session:
        clicks = session.scalars(select(Engagement.url).where(col(Engagement.kind) == "click")).all()
    assert sorted(clicks) == ["https://shop.example/cart", "https://www.shop.example/cart"]


def test_a_pixel_fetched_ten_times_is_one_open(api: TestClient, store: Store) -> None:
    """Mail clients and proxies fetch the pixel again and again: one delivery, one open, every time a GIF."""
    delivery = store.deliveries.claim(
        Delivery(
            key="welcome:c1:1:welcome",
            journey="welcome",
            customer_id="c1",
            step="welcome",
            workflow_id="welcome:c1",
        )
    )
    token = Signer(SECRET).sign("open", str(delivery.id))
    for _ in range(10):
        pixel = api.get(f"/t/o/{token}.gif")
        assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    with Session(store.engine) as session:
        opens = session.scalars(select(Engagement.id).where(col(Engagement.kind) == "open")).all()
    assert len(opens) == 1
    [row] = store.rollups.funnel("welcome", None, None).deliveries
    assert (row.n, row.opened, row.clicked) == (1, 1, 0)
