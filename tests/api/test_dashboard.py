"""The dashboard's pages over the seeded scenario (tests/support/insight.py): signing in, and every figure on
a page the same as the JSON API's for the same period; everything escaped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from tests.support.insight import FEATURED, REGISTRY, seed
from touchflow.api.main import create_app
from touchflow.models import CustomerIn, EventIn
from touchflow.settings import Settings
from touchflow.storage import Store

SCOPES = (
    "data-journey",
    "data-step",
    "data-experiment",
    "data-variant",
    "data-stage",
    "data-broadcast",
    "data-segment",
)
READER = "read:reader-key-123"
INGESTER = "ingest:ingest-key-123"


class Figures(HTMLParser):
    """Every `data-figure` element's text, by the `data-*` scopes around it: {(scope..., figure): text}."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.found: dict[tuple[str, ...], str] = {}
        self.text: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("input", "br", "meta", "rect", "polyline"):
            return
        self.stack.append((tag, dict(attrs)))
        self.text.append([])

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or tag in ("input", "br", "meta", "rect", "polyline"):
            return
        _, attrs = self.stack.pop()
        text = "".join(self.text.pop()).strip()
        if self.text:
            self.text[-1].append(text)
        if "data-figure" in attrs:
            scope = tuple(str(a[s]) for _, a in self.stack for s in SCOPES if s in a)
            self.found[(*scope, str(attrs["data-figure"]))] = text

    def handle_data(self, data: str) -> None:
        if self.text:
            self.text[-1].append(data)


def figures(html: str) -> dict[tuple[str, ...], str]:
    parser = Figures()
    parser.feed(html)
    return parser.found


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


@pytest.fixture
def bare_client(db_url: str, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(database_url=db_url, api_keys=[API_KEY, READER, INGESTER])
    with TestClient(create_app(settings, REGISTRY, run_relay=False)) as client:
        yield client


@pytest.fixture
def app_client(bare_client: TestClient) -> TestClient:
    seed(bare_client.app.state.store)  # type: ignore[attr-defined]
    return bare_client


def test_signing_in(bare_client: TestClient) -> None:
    app_client = bare_client
    browser = {"Accept": "text/html"}
    away = app_client.get("/dashboard/stages?range=7d", headers=browser, follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fstages%3Frange%3D7d"
    assert app_client.get("/dashboard").status_code == 401  # a script: no redirect
    login = app_client.get("/dashboard/login").text
    assert "api_key" in login and "Sign out" not in login

    def sign_in(key: str, next_: str = "/dashboard/stages") -> object:
        return app_client.post(
            "/dashboard/login",
            content=f"api_key={key}&next={next_}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )

    flood = app_client.post(
        "/dashboard/login",
        content="&".join(f"f{n}=x" for n in range(50)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert flood.status_code == 422 and "api_key" in flood.text
    wrong = sign_in("not-a-key-at-all")
    assert wrong.status_code == 401 and "invalid API key" in wrong.text  # type: ignore[attr-defined]
    ingest_only = sign_in("ingest-key-123")
    assert ingest_only.status_code == 403 and "read" in ingest_only.text  # type: ignore[attr-defined]
    signed = sign_in("reader-key-123")
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/stages"  # type: ignore[attr-defined]
    cookie = signed.headers["set-cookie"]  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie and "reader-key-123" not in cookie
    assert app_client.get("/dashboard/stages").status_code == 200  # the cookie now
    assert sign_in("reader-key-123", "//evil.example/").headers["location"] == "/dashboard"  # type: ignore[attr-defined]

    app_client.cookies.set("touchflow_dashboard", "x" + app_client.cookies["touchflow_dashboard"][1:])
    assert app_client.get("/dashboard").status_code == 401
    app_client.cookies.clear()
    assert app_client.get("/dashboard", headers={"Authorization": "Bearer reader-key-123"}).status_code == 200
    assert app_client.get("/dashboard", headers={"Authorization": "Bearer ingest-key-123"}).status_code == 403

    https = TestClient(app_client.app, base_url="https://testserver")
    over_tls = https.post(
        "/dashboard/login",
        content="api_key=reader-key-123",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert "Secure" in over_tls.headers["set-cookie"]


def test_the_pages_show_the_json_figures(app_client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for query in ({"range": "30d"}, {"range": "7d"}):
        shown = app_client.get("/dashboard/journeys/winback", params=query, headers=auth)
        page = figures(shown.text)
        period = shown.text.split('href="/v1/journeys/winback/funnel?', 1)[1].split('"', 1)[0]
        funnel = app_client.get(
            f"/v1/journeys/winback/funnel?{period.replace('&amp;', '&')}", headers=auth
        ).json()
        for figure in ("entered", "active", "converted", "attributed_conversions", "revenue"):
            assert number(page[(figure,)]) == funnel[figure], figure
        for step in funnel["steps"]:
            for figure in ("reached", "sent", "delivered", "opened", "clicked", "attributed_conversions"):
                assert number(page[(step["stage"], step["step"], figure)]) == step[figure], (
                    step["step"],
                    figure,
                )
    page = figures(app_client.get("/dashboard/journeys/winback", headers=auth).text)
    assert page[("awareness", "win_offer", "to_next")] == "75.0%"
    assert page[("subject_line", "b", "attributed_conversions")] == "50"
    assert page[("subject_line", "b", "conversion_rate")] == "25.0%"
    html = app_client.get("/dashboard/journeys/winback", headers=auth).text
    subject, layout = html.split('data-experiment="subject_line"')[1].split('data-experiment="picks_layout"')
    assert "Variant b wins" in subject and "No significant difference" in layout and "z-test" in layout
    assert "WorkflowType%3D%22winback%22" in html and "biggest drop-off" in html

    overview = figures(app_client.get("/dashboard", headers=auth).text)
    assert overview[("winback", "revenue")] == "8,160.00" and overview[("winback", "entered")] == "400"
    assert overview[("december", "attributed_conversions")] == "5"
    assert overview[("december", "revenue")] == "200.00"
    assert overview[("lifecycle:customer", "size")] == "118"

    stages = figures(app_client.get("/dashboard/stages", headers=auth).text)
    for row in app_client.get("/v1/stages", params={"since": "2000-01-01T00:00:00Z"}, headers=auth).json():
        assert number(stages[(row["stage"], "touchpoints")]) == row["touchpoints"]
        assert number(stages[(row["stage"], "attributed_conversions")]) == row["attributed_conversions"]
    assert stages[("retention", "revenue")] == "200.00"


def test_a_customer_page_and_everything_escaped(app_client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    store: Store = app_client.app.state.store  # type: ignore[attr-defined]
    found = app_client.get(
        "/dashboard/customers", params={"q": "c203@EXAMPLE.com"}, headers=auth, follow_redirects=False
    )
    assert found.headers["location"] == f"/dashboard/customers/{FEATURED}"
    page = app_client.get(f"/dashboard/customers/{FEATURED}", headers=auth).text
    assert "CustomerId%3D%22c203%22" in page and "credited to winback" in page
    assert figures(page)[("outcome",)] == "converted"

    evil = "<script>alert(1)</script>"
    store.customers.upsert(CustomerIn(id="x<b>1", email="x@example.com"))
    store.events.ingest(
        [EventIn(id="ev-evil", customer_id="x<b>1", name="viewed", properties={"title": evil})], ()
    )
    shown = app_client.get("/dashboard/customers/x%3Cb%3E1", headers=auth).text
    assert evil not in shown and "&lt;script&gt;" in shown and "x<b>1" not in shown
    missing = app_client.get("/dashboard/customers/nobody", headers=auth)
    assert missing.status_code == 404 and "no customer" in missing.text
    assert app_client.get("/dashboard?range=1y", headers=auth).status_code == 422
