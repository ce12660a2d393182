"""POST /v1/webhooks/zalo: Zalo's signature and the event's age, `user_received_message` marking a delivery
delivered, and 200 for any other signed event (Zalo turns off a webhook that keeps failing)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import rows
from tests.support.zalo import APP_ID, OA_SECRET_KEY, ZaloServer
from touchflow.api.main import create_app
from touchflow.models import Delivery, DeliveryStatus
from touchflow.settings import Settings
from touchflow.storage import Store

MSG_ID = "a0ad5a9d5e8fb7d1ee9e"
DELIVERED_MS = 1_772_000_000_123


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"zalo_app_id": APP_ID, "zalo_oa_secret_key": OA_SECRET_KEY}


@pytest.fixture
def zalo_api(api: TestClient) -> TestClient:
    """The API as Zalo calls it: no API key (the signature authenticates)."""
    api.headers.pop("Authorization")
    return api


def store_of(api: TestClient) -> Store:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    return store


def sent_delivery(store: Store) -> Delivery:
    delivery = store.deliveries.claim(
        Delivery(
            key="probe:c1:1:probe", journey="probe", step="probe", customer_id="c1", workflow_id="probe:c1"
        )
    )
    assert delivery.id is not None
    return rows.update_delivery(
        store, delivery.id, status=DeliveryStatus.SENT, channel="zalo_zns", provider_id=MSG_ID
    )


def now_ms(ago: timedelta = timedelta(0)) -> int:
    return int((time.time() - ago.total_seconds()) * 1000)


def event(name: str = "user_received_message", *, sent: int | str | None = None, **message: Any) -> bytes:
    """A Zalo OA event as Zalo posts it (ZNS receipt shape: message.msg_id, tracking_id, delivery_time),
    sent now unless `sent` (its `timestamp`) says otherwise."""
    payload = {
        "app_id": APP_ID,
        "sender": {"id": "579745863508352884"},
        "recipient": {"id": "2512523625412515"},
        "event_name": name,
        "message": {"msg_id": MSG_ID, "tracking_id": "9f1c", "delivery_time": str(DELIVERED_MS), **message},
        "timestamp": str(now_ms() if sent is None else sent),
    }
    return json.dumps(payload).encode()


def signed(body: bytes) -> dict[str, str]:
    timestamp = str(json.loads(body)["timestamp"])
    return {"X-ZEvent-Signature": ZaloServer.sign(body, timestamp), "Content-Type": "application/json"}


def test_user_received_message_marks_the_delivery_delivered(zalo_api: TestClient) -> None:
    store = store_of(zalo_api)
    delivery = sent_delivery(store)
    body = event()
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "delivered"}
    [stored] = store.deliveries.of_customer("c1")
    assert stored.id == delivery.id
    assert stored.status == DeliveryStatus.DELIVERED
    assert stored.delivered_at == datetime.fromtimestamp(DELIVERED_MS / 1000, UTC)

    # Zalo repeats a webhook it thinks failed: the answer is the same and nothing changes.
    again = zalo_api.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert again.status_code == 200
    [still] = store.deliveries.of_customer("c1")
    assert (still.status, still.delivered_at) == (stored.status, stored.delivered_at)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, event()),  # no signature
        ({"X-ZEvent-Signature": "mac=" + "0" * 64}, event()),
        ({"X-ZEvent-Signature": "not-a-mac"}, event()),
        (signed(event()), event(delivery_time="1")),  # signed another body
    ],
)
def test_a_wrong_signature_is_refused(headers: dict[str, str], body: bytes, zalo_api: TestClient) -> None:
    store = store_of(zalo_api)
    sent_delivery(store)
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers=headers)
    assert response.status_code == 401
    assert "X-ZEvent-Signature" in response.json()["detail"]
    [stored] = store.deliveries.of_customer("c1")
    assert stored.status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (event("user_seen_message"), "ignored"),
        (event("follow"), "ignored"),
        (event(msg_id="someone-elses"), "unknown message"),
    ],
)
def test_other_events_are_ignored(body: bytes, answer: str, zalo_api: TestClient) -> None:
    store = store_of(zalo_api)
    sent_delivery(store)
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert (response.status_code, response.json()) == (200, {"status": answer})
    [stored] = store.deliveries.of_customer("c1")
    assert stored.status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    "body",
    [
        event(msg_id=""),
        event(delivery_time="yesterday"),
        event(delivery_time="9" * 40),  # digits, but no date
        event().replace(b'"message": {', b'"message": "not an object", "x": {'),
        event(name=None),  # type: ignore[arg-type]
    ],
)
def test_a_signed_event_it_cannot_use_is_answered_200_and_changes_nothing(
    body: bytes, zalo_api: TestClient
) -> None:
    store = store_of(zalo_api)
    sent_delivery(store)
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    [stored] = store.deliveries.of_customer("c1")
    assert stored.status == DeliveryStatus.SENT


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_a_body_that_is_no_json_object_is_422(body: bytes, zalo_api: TestClient) -> None:
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers={"X-ZEvent-Signature": "x"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body")


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (timedelta(minutes=14), 200),
        (timedelta(minutes=16), 401),  # replayed later: refused, though signed
        (timedelta(days=30), 401),
        (-timedelta(minutes=16), 401),  # from a clock far ahead
        ("", 401),  # no age to judge
        ("yesterday", 401),
    ],
)
def test_a_signed_event_outside_the_freshness_window_is_refused(
    sent: timedelta | str, status: int, zalo_api: TestClient
) -> None:
    store = store_of(zalo_api)
    sent_delivery(store)
    body = event(sent=now_ms(sent) if isinstance(sent, timedelta) else sent)
    response = zalo_api.post("/v1/webhooks/zalo", content=body, headers=signed(body))
    assert response.status_code == status, response.text
    [stored] = store.deliveries.of_customer("c1")
    if status == 401:
        assert response.json()["detail"].startswith("timestamp")
        assert stored.status == DeliveryStatus.SENT
    else:
        assert stored.status == DeliveryStatus.DELIVERED


def test_the_freshness_window_is_a_setting(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(zalo_app_id=APP_ID, zalo_oa_secret_key=OA_SECRET_KEY, zalo_webhook_max_age="1h")
    body = event(sent=now_ms(timedelta(minutes=30)))
    with TestClient(create_app(settings, run_relay=False)) as client:
        response = client.post("/v1/webhooks/zalo", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        older = event(sent=now_ms(timedelta(minutes=61)))
        refused = client.post("/v1/webhooks/zalo", content=older, headers=signed(older))
    assert refused.status_code == 401
    assert "TOUCHFLOW_ZALO_WEBHOOK_MAX_AGE" in refused.json()["detail"]


def test_webhooks_are_off_without_the_oa_secret(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(zalo_app_id=APP_ID), run_relay=False)
    with TestClient(app) as client:
        response = client.post("/v1/webhooks/zalo", content=event(), headers=signed(event()))
    assert response.status_code == 404
    assert "TOUCHFLOW_ZALO_OA_SECRET_KEY" in response.json()["detail"]
