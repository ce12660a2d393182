"""POST /v1/webhooks/zalo: Zalo's signature, and `user_received_message` marking a delivery delivered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.main import create_app
from tests.support.zalo import APP_ID, ZaloServer
from touchflow.models import Delivery, DeliveryStatus
from touchflow.settings import Settings
from touchflow.store import Store

MSG_ID = "a0ad5a9d5e8fb7d1ee9e"
DELIVERED_MS = 1_772_000_000_123


@pytest.fixture
async def client(
    db_url: str, store: Store, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url=db_url, zalo_app_id=APP_ID, zalo_oa_secret_key="oa-secret-key", auto_migrate=False
    )
    app = create_app(settings, run_relay=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client
    app.state.store.engine.dispose()


def sent_delivery(store: Store, provider_id: str = MSG_ID) -> Delivery:
    delivery = store.claim_delivery(
        Delivery(
            key="probe:c1:1:probe", journey="probe", step="probe", customer_id="c1", workflow_id="probe:c1"
        )
    )
    assert delivery.id is not None
    return store.update_delivery(
        delivery.id, status=DeliveryStatus.SENT, channel="zalo_zns", provider_id=provider_id
    )


def event(name: str = "user_received_message", **message: Any) -> bytes:
    payload = {
        "app_id": APP_ID,
        "sender": {"id": "579745863508352884"},
        "recipient": {"id": "2512523625412515"},
        "event_name": name,
        "message": {"msg_id": MSG_ID, "tracking_id": "9f1c", "delivery_time": str(DELIVERED_MS), **message},
        "timestamp": str(DELIVERED_MS + 50),
    }
    return json.dumps(payload).encode()


def signed(body: bytes) -> dict[str, str]:
    timestamp = str(json.loads(body)["timestamp"])
    return {"X-ZEvent-Signature": ZaloServer.sign(body, timestamp), "Content-Type": "application/json"}


async def test_user_received_message_marks_the_delivery_delivered(
    client: httpx.AsyncClient, store: Store
) -> None:
    delivery = sent_delivery(store)
    body = event()
    response = await client.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "delivered"}
    [stored] = store.customer_deliveries("c1")
    assert stored.id == delivery.id
    assert stored.status == DeliveryStatus.DELIVERED
    assert stored.delivered_at == datetime.fromtimestamp(DELIVERED_MS / 1000, UTC)

    # Zalo repeats a webhook it thinks failed: the answer is the same and nothing changes.
    again = await client.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert again.status_code == 200
    [still] = store.customer_deliveries("c1")
    assert (still.status, still.delivered_at) == (stored.status, stored.delivered_at)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature
        {"X-ZEvent-Signature": "mac=" + "0" * 64},
        {"X-ZEvent-Signature": "not-a-mac"},
    ],
)
async def test_a_wrong_signature_is_refused(
    headers: dict[str, str], client: httpx.AsyncClient, store: Store
) -> None:
    sent_delivery(store)
    response = await client.post("/v1/webhooks/zalo", content=event(), headers=headers)
    assert response.status_code == 401
    assert "X-ZEvent-Signature" in response.json()["detail"]
    [stored] = store.customer_deliveries("c1")
    assert stored.status == DeliveryStatus.SENT


async def test_a_signature_over_another_body_is_refused(client: httpx.AsyncClient, store: Store) -> None:
    sent_delivery(store)
    response = await client.post(
        "/v1/webhooks/zalo", content=event(delivery_time="1"), headers=signed(event())
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (event("user_seen_message"), 200, {"status": "ignored"}),
        (event("follow"), 200, {"status": "ignored"}),
        (event(msg_id="someone-elses"), 200, {"status": "unknown message"}),
    ],
)
async def test_other_events_are_ignored(
    body: bytes, status: int, answer: dict[str, str], client: httpx.AsyncClient, store: Store
) -> None:
    sent_delivery(store)
    response = await client.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert (response.status_code, response.json()) == (status, answer)
    [stored] = store.customer_deliveries("c1")
    assert stored.status == DeliveryStatus.SENT


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/webhooks/zalo", content=b"{not json", headers={"X-ZEvent-Signature": "x"}
    )
    assert response.status_code == 422
    assert "body" in response.json()["detail"]


async def test_webhooks_are_off_without_the_oa_secret(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(zalo_app_id=APP_ID), run_relay=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/v1/webhooks/zalo", content=event(), headers=signed(event()))
    app.state.store.engine.dispose()
    assert response.status_code == 503
    assert "TOUCHFLOW_ZALO_OA_SECRET_KEY" in response.json()["detail"]
