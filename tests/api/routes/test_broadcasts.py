"""`/v1/broadcasts`: what a request may ask for (422s that name the field), the answer's counts, and the
signals it hands the broadcast's workflow. (Sending itself is tests/workflows/test_broadcast.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from tests.support import rows
from touchflow.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus, EventIn
from touchflow.storage import Store

HOUR = timedelta(hours=1)

READ_KEY = "read:broadcasts-reader-key"
EMAIL = {"email": {"subject": "Sale, {{ customer.first_name }}", "text": "20% off", "html": "<p>20% off</p>"}}


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"api_keys": [API_KEY, READ_KEY]}


class FakeRouter:
    def __init__(self) -> None:
        self.started: list[tuple[str, datetime | None]] = []
        self.signals: list[tuple[str, str]] = []

    async def start_broadcast(
        self, broadcast_id: str, send_at: datetime | None, heartbeat: timedelta
    ) -> None:
        self.started.append((broadcast_id, send_at))

    async def signal_broadcast(self, broadcast_id: str, signal: str) -> None:
        self.signals.append((broadcast_id, signal))


@pytest.fixture
def router(api: TestClient) -> FakeRouter:
    fake = FakeRouter()

    async def connected() -> FakeRouter:
        return fake

    api.app.state.relay.router = connected  # type: ignore[attr-defined]
    return fake


def store_of(api: TestClient) -> Store:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    return store


def test_a_broadcast_is_stored_and_its_workflow_started(api: TestClient, router: FakeRouter) -> None:
    body = {"name": "sale", "customer_ids": ["a", "b"], "via": ["email"], "content": EMAIL, "rate": 50}
    answer = api.post("/v1/broadcasts", json={**body, "send_at": "2026-12-24T09:00:00+07:00"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["status"] == "scheduled" and made["id"].startswith("b_")
    assert router.started == [(made["id"], datetime.fromisoformat("2026-12-24T02:00:00+00:00"))]
    assert api.get(f"/v1/broadcasts/{made['id']}").json()["audience"] == {"customer_ids": ["a", "b"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"segment": "vip"}, "give one audience: segment or customer_ids"),
        ({"customer_ids": None}, "give one audience: segment or customer_ids"),
        ({"template": "sale"}, "give the message one way: content (per channel) or template"),
        ({"via": ["email", "sms"]}, "content: one entry per channel of via (email, sms); missing sms"),
        ({"via": ["fax"], "content": {"fax": {"text": "x"}}}, "via: no channel 'fax'"),
        ({"content": {"email": {"subject": "x", "text": "y"}}}, "content.email: email needs the parts html"),
        ({"content": {"email": {**EMAIL["email"], "text": "{% if %}"}}}, "content.email.text raised"),
        ({"local_time": "9am"}, "local_time: Value error, a time of day HH:MM"),
        ({"send_at": "2026-12-24T09:00:00"}, "send_at: Value error, give a time zone"),
        ({"rate": 0}, "rate: Input should be greater than 0"),
        ({"content": {"email": {"vi": {"text": "x"}, "subject": "y"}}}, "not both"),
    ],
)
def test_what_cannot_be_sent_is_a_422_naming_it(
    api: TestClient, router: FakeRouter, change: dict[str, Any], message: str
) -> None:
    body = {"name": "sale", "customer_ids": ["a"], "via": ["email"], "content": EMAIL, **change}
    answer = api.post("/v1/broadcasts", json=body)
    assert answer.status_code == 422
    assert message in answer.json()["message"]
    assert router.started == []


def test_a_segment_nobody_defined_is_404_and_a_defined_one_is_sent_to(
    api: TestClient, router: FakeRouter
) -> None:
    answer = api.post(
        "/v1/broadcasts", json={"name": "s", "segment": "vip", "via": ["email"], "content": EMAIL}
    )
    assert answer.status_code == 404
    assert "no segment named 'vip'" in answer.json()["message"]
    vip = {"name": "vip", "condition": {"attribute": "tier", "op": "eq", "value": "gold"}}
    assert api.post("/v1/segments", json=vip).status_code == 201
    answer = api.post(
        "/v1/broadcasts", json={"name": "s", "segment": "vip", "via": ["email"], "content": EMAIL}
    )
    assert answer.status_code == 201, answer.text


def test_counts_come_from_the_recipients_deliveries(api: TestClient) -> None:
    store = store_of(api)
    store.broadcasts.create(
        Broadcast(id="b1", name="sale", audience={"customer_ids": ["a"]}, via=["email"], template="sale")
    )
    store.broadcasts.add_recipients("b1", [(c, datetime.now().astimezone(), 0) for c in "abcde"])
    store.broadcasts.finish_snapshot("b1")
    for customer, state, reason in [
        ("a", DeliveryStatus.SENT, None),
        ("b", DeliveryStatus.SKIPPED, "email: no consent: email.marketing is false"),
        ("c", DeliveryStatus.CAPPED, "frequency cap: 3 marketing message(s) per 1 day, 0:00:00"),
        ("d", DeliveryStatus.FAILED, "email: mailbox unavailable"),
    ]:
        store.deliveries.claim(
            Delivery(
                key=f"broadcast:b1:{customer}",
                journey="broadcast:b1",
                step="sale",
                customer_id=customer,
                workflow_id="broadcast:b1",
                status=state,
                error=reason,
            )
        )
    got = api.get("/v1/broadcasts/b1").json()
    assert (got["total"], got["sent"], got["failed"], got["pending"]) == (5, 1, 1, 1)
    assert got["skipped"] == {
        "email: no consent: email.marketing is false": 1,
        "frequency cap: 3 marketing message(s) per 1 day, 0:00:00": 1,
    }
    assert api.get("/v1/broadcasts/nope").status_code == 404


def test_pause_resume_and_cancel_are_signals_a_finished_broadcast_refuses(
    api: TestClient, router: FakeRouter
) -> None:
    store = store_of(api)
    store.broadcasts.create(
        Broadcast(id="b2", name="sale", audience={"customer_ids": ["a"]}, via=["email"], template="sale")
    )
    for signal in ("pause", "resume", "cancel"):
        assert api.post(f"/v1/broadcasts/b2/{signal}").status_code == 200
    assert router.signals == [("b2", "pause"), ("b2", "resume"), ("b2", "cancel")]
    store.broadcasts.set_status("b2", BroadcastStatus.COMPLETED)
    answer = api.post("/v1/broadcasts/b2/pause")
    assert answer.status_code == 409
    assert answer.json()["detail"] == "cannot pause a broadcast that is completed"


def test_the_list_pages_newest_first_for_a_read_key(api: TestClient) -> None:
    store = store_of(api)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for n in range(5):
        store.broadcasts.create(
            Broadcast(
                id=f"b{n}",
                name=f"sale {n}",
                audience={"customer_ids": ["a"]},
                via=["email"],
                template="sale",
                created_at=start + timedelta(hours=n),
            )
        )
    store.deliveries.claim(sent_delivery("b3", "a", start))
    reader = {"Authorization": f"Bearer {READ_KEY.partition(':')[2]}"}
    first = api.get("/v1/broadcasts", params={"limit": 2}, headers=reader)
    assert first.status_code == 200, first.text
    assert [b["id"] for b in first.json()["broadcasts"]] == ["b4", "b3"]
    assert first.json()["broadcasts"][1]["sent"] == 1  # counted, as GET of one has it
    assert first.json()["broadcasts"][1]["funnel"] is None  # the funnel is GET of one alone
    cursor = first.json()["next_cursor"]
    second = api.get("/v1/broadcasts", params={"limit": 2, "cursor": cursor}, headers=reader).json()
    assert [b["id"] for b in second["broadcasts"]] == ["b2", "b1"]
    last = api.get("/v1/broadcasts", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert ([b["id"] for b in last["broadcasts"]], last["next_cursor"]) == (["b0"], None)
    bad = api.get("/v1/broadcasts", params={"cursor": "not-ours"})
    assert bad.status_code == 422 and "cursor: not a cursor this API returned" in bad.json()["message"]
    assert api.get("/v1/broadcasts", params={"limit": 0}).status_code == 422
    assert api.post("/v1/broadcasts/b4/cancel", headers=reader).status_code == 403


def sent_delivery(broadcast_id: str, customer: str, sent_at: datetime) -> Delivery:
    return Delivery(
        key=f"broadcast:{broadcast_id}:{customer}",
        journey=f"broadcast:{broadcast_id}",
        step="sale",
        customer_id=customer,
        workflow_id=f"broadcast:{broadcast_id}",
        channel="email",
        status=DeliveryStatus.SENT,
        sent_at=sent_at,
    )


def test_the_funnel_counts_opens_clicks_and_the_orders_credited_to_the_broadcast(api: TestClient) -> None:
    """Conversions as journeys count them (touchflow.attribution): an order within the attribution window
    (3 days) after the send, credited to its last touch: here the broadcast, unless a later message came."""
    store = store_of(api)
    store.broadcasts.create(
        Broadcast(id="bf", name="sale", audience={"customer_ids": ["a"]}, via=["email"], template="sale")
    )
    sent_at = datetime.now(UTC) - timedelta(days=10)
    ids = {c: store.deliveries.claim(sent_delivery("bf", c, sent_at)).id for c in "abcdef"}
    for customer, kinds in {"a": ["open", "open", "click"], "b": ["open"], "c": ["click", "click"]}.items():
        for kind in kinds:
            store.deliveries.record_engagement(ids[customer] or 0, kind, "https://shop.example/x")
    # f got a welcome email after the broadcast: its order is the welcome's.
    later = Delivery(key="welcome:f", journey="welcome", step="welcome", customer_id="f", workflow_id="w")
    rows.update_delivery(
        store, store.deliveries.claim(later).id or 0, status=DeliveryStatus.SENT, sent_at=sent_at + HOUR
    )
    orders = [
        ("a", timedelta(hours=2), 100),  # credited
        ("a", timedelta(days=1), 50),  # a second order, credited too
        ("b", timedelta(days=2, hours=23), "12"),  # credited, near the window's end (a total as text reads)
        ("c", timedelta(days=3, hours=1), 70),  # too late
        ("d", -timedelta(hours=1), 70),  # before the send
        ("f", 2 * HOUR, 70),  # the welcome's
    ]
    store.events.ingest(
        [
            EventIn(
                id=f"o{n}",
                customer_id=c,
                name="order_placed",
                properties={"total": total},
                timestamp=sent_at + after,
            )
            for n, (c, after, total) in enumerate(orders)
        ],
        relayed_names=(),
    )
    store.events.ingest(  # not an order
        [EventIn(id="v", customer_id="e", name="product_viewed", timestamp=sent_at + HOUR)],
        relayed_names=(),
    )
    funnel = api.get("/v1/broadcasts/bf").json()["funnel"]
    assert funnel == {
        "opened": 2,
        "clicked": 2,
        "converted": 3,
        "revenue": 162,
        "conversion_window": "P3D",
    }
