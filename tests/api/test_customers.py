"""POST /v1/customers (upsert) and GET /v1/customers/{id}."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import rows
from tests.support.concurrency import all_at_once
from touchflow.models import Delivery, DeliveryStatus
from touchflow.storage import Store


def test_create_then_partial_update_keeps_what_was_not_sent(api: TestClient) -> None:
    created = api.post(
        "/v1/customers",
        json={
            "id": "c-1",
            "email": "an@example.com",
            "phone": "+84 912 345 678",
            "locale": "vi-VN",
            "timezone": "Asia/Ho_Chi_Minh",
            "attributes": {"first_name": "An", "tier": "silver"},
            "consents": {"marketing": True},
        },
    )
    assert created.status_code == 201
    assert created.json()["phone"] == "+84912345678"

    updated = api.post("/v1/customers", json={"id": "c-1", "attributes": {"tier": "gold"}})
    assert updated.status_code == 200
    profile = updated.json()
    assert profile["email"] == "an@example.com"
    assert profile["attributes"] == {"first_name": "An", "tier": "gold"}
    assert profile["consents"] == {"marketing": True}


def test_a_field_sent_as_null_is_cleared(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c-2", "email": "b@example.com"})
    cleared = api.post("/v1/customers", json={"id": "c-2", "email": None}).json()
    assert cleared["email"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "c", "email": "not-an-email"}, "email"),
        ({"id": "c", "phone": "call me"}, "phone"),
        ({"id": "c", "timezone": "Mars/Olympus"}, "timezone"),
        ({"id": "c", "locale": "english please"}, "locale"),
        ({"id": "c", "consents": {"marketing": "maybe"}}, "consents.marketing"),
        ({"email": "a@example.com"}, "id"),
        ({"id": "c", "nickname": "x"}, "nickname"),
    ],
)
def test_invalid_profiles_get_422_naming_the_field(api: TestClient, body: dict[str, Any], field: str) -> None:
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{field}:")
    assert api.get("/v1/customers/c").status_code == 404


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        pytest.param(r'{"id": "c\u0000"}', "id", "NUL", id="NUL in the id"),
        pytest.param(r'{"id": "c", "attributes": {"a\u0000": 1}}', "attributes", "NUL", id="NUL in a name"),
        pytest.param(
            r'{"id": "c", "attributes": {"address": {"street": "x\u0000"}}}',
            "attributes",
            "address.street",
            id="NUL deep in an attribute",
        ),
        pytest.param(
            r'{"id": "c", "attributes": {"a": "\udbff"}}', "attributes", "surrogate", id="surrogate"
        ),
        pytest.param('{"id": "c", "attributes": {"score": NaN}}', "attributes", "NaN", id="NaN"),
        pytest.param('{"id": "c", "attributes": {"score": Infinity}}', "attributes", "finite", id="Infinity"),
        pytest.param(r'{"id": "c", "consents": {"email\u0000": true}}', "consents", "NUL", id="NUL consent"),
        pytest.param(
            r'{"id": "c", "consents": {"\ud800": true}}', "consents", "surrogate", id="surrogate consent"
        ),
    ],
)
def test_text_and_numbers_no_database_can_hold_get_422_naming_the_field(
    api: TestClient, text: str, field: str, hint: str
) -> None:
    response = api.post("/v1/customers", content=text.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"{field}"), message
    assert hint in message
    assert api.get("/v1/customers/c").status_code == 404


def test_profile_shows_recent_events_newest_first(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c-3"})
    for i, ts in enumerate(["2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-02-01T00:00:00Z"]):
        api.post(
            "/v1/events", json={"id": f"e{i}", "customer_id": "c-3", "name": "page_viewed", "timestamp": ts}
        )
    detail = api.get("/v1/customers/c-3").json()
    assert [e["id"] for e in detail["events"]] == ["e1", "e2", "e0"]
    assert detail["deliveries"] == []


def test_a_profile_shows_the_language_each_delivery_was_rendered_in(api: TestClient) -> None:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    api.post("/v1/customers", json={"id": "c-fr", "locale": "fr"})
    claimed = store.deliveries.claim(
        Delivery(
            key="welcome:c-fr:1:welcome",
            journey="welcome",
            step="welcome",
            customer_id="c-fr",
            workflow_id="w",
        )
    )
    assert claimed.id is not None
    rows.update_delivery(store, claimed.id, status=DeliveryStatus.SENT, locale="en", locale_fallback=True)
    [shown] = api.get("/v1/customers/c-fr").json()["deliveries"]
    assert (shown["locale"], shown["locale_fallback"]) == ("en", True)


def test_an_unknown_customer_is_404(api: TestClient) -> None:
    response = api.get("/v1/customers/nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]


def test_reading_a_profile_needs_a_key(api: TestClient) -> None:
    api.headers.pop("Authorization")
    assert api.get("/v1/customers/c-1").status_code == 401
    assert api.post("/v1/customers", json={"id": "c-9"}).status_code == 401


def test_health_needs_no_key(api: TestClient) -> None:
    api.headers.pop("Authorization")
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_null_attributes_clear_them(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c-5", "attributes": {"a": 1}, "consents": {"marketing": True}})
    cleared = api.post("/v1/customers", json={"id": "c-5", "attributes": None, "consents": None})
    assert cleared.status_code == 200
    assert (cleared.json()["attributes"], cleared.json()["consents"]) == ({}, {})


def test_concurrent_upserts_of_a_new_customer_all_succeed_and_keep_every_attribute(api: TestClient) -> None:
    answers = all_at_once(
        16, lambda i: api.post("/v1/customers", json={"id": "new", "attributes": {f"k{i}": i}}).status_code
    )
    assert sorted(answers) == [200] * 15 + [201]
    assert api.get("/v1/customers/new").json()["customer"]["attributes"] == {f"k{i}": i for i in range(16)}
