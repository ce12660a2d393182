"""The Segment HTTP Tracking API as a library meets it: paths, authentication, body encodings, limits,
answers. (What each message means is tests/touchflow/test_segment.py; the real libraries are
tests/clients/.)"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from touchflow.storage import Store

BASIC = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"track_allowed_origins": ["https://shop.example"], "track_max_batch_bytes": 64 * 1024}


def store_of(api: TestClient) -> Store:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    return store


def track(message_id: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "userId": "u-1", "event": "Product Viewed", **fields}


def post(api: TestClient, path: str, body: Any, **headers: str) -> Any:
    """As a library posts: its own Authorization (none by default), the body as given."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.post(
        path, content=content, headers={"Authorization": "", "Content-Type": "application/json", **headers}
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/track", track()),
        ("/v1/t", track()),
        ("/v1/page", {"messageId": "m-1", "anonymousId": "a-1", "name": "Home"}),
        ("/v1/p", {"messageId": "m-1", "anonymousId": "a-1", "name": "Home"}),
        ("/v1/screen", {"messageId": "m-1", "userId": "u-1", "name": "Cart"}),
        ("/v1/s", {"messageId": "m-1", "userId": "u-1", "name": "Cart"}),
    ],
)
def test_each_event_call_is_stored_and_answered_200_success(api: TestClient, path: str, message: Any) -> None:
    answer = post(api, path, message, Authorization=BASIC)
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True and answer.json()["events"] == 1
    stored = store_of(api).events.get("m-1")
    assert stored is not None


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b"])
def test_batches_store_every_message_once(api: TestClient, path: str) -> None:
    body = {"batch": [track("m-1"), track("m-2")], "sentAt": "2026-12-01T00:00:00Z"}
    first = post(api, path, body, Authorization=BASIC).json()
    again = post(api, path, body, Authorization=BASIC).json()
    assert (first["events"], first["duplicates"]) == (2, 0)
    assert (again["success"], again["events"], again["duplicates"]) == (True, 0, 2)


def test_identify_and_group_update_the_profile(api: TestClient) -> None:
    identify = {"userId": "u-1", "traits": {"email": "lan@example.vn", "firstName": "Lan", "plan": "gold"}}
    assert post(api, "/v1/identify", identify, Authorization=BASIC).json()["profiles"] == 1
    post(api, "/v1/g", {"userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"}}, Authorization=BASIC)
    customer = store_of(api).customers.get("u-1")
    assert customer is not None and customer.email == "lan@example.vn"
    assert customer.attributes == {
        "first_name": "Lan",
        "plan": "gold",
        "group": {"id": "acme", "name": "Acme"},
    }


@pytest.mark.parametrize(
    ("headers", "body_key"),
    [
        ({"Authorization": BASIC}, None),  # analytics-python, analytics-node
        ({"Authorization": f"Bearer {API_KEY}"}, None),  # as everywhere else in the API
        ({"Content-Type": "text/plain"}, API_KEY),  # analytics.js: writeKey in a text/plain body
    ],
)
def test_a_key_is_taken_however_a_library_carries_it(
    api: TestClient, headers: dict[str, str], body_key: str | None
) -> None:
    message = track() | ({"writeKey": body_key} if body_key else {})
    answer = post(api, "/v1/t", message, **headers)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"tfk_wrong_key:").decode()},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer tfk_wrong_key"},
    ],
)
def test_a_missing_or_wrong_key_is_401_and_stores_nothing(api: TestClient, headers: dict[str, str]) -> None:
    answer = post(api, "/v1/track", track(), **headers)
    assert answer.status_code == 401
    assert "API key" in answer.json()["detail"]
    assert store_of(api).events.get("m-1") is None


def test_a_gzipped_body_is_read(api: TestClient) -> None:
    body = gzip.compress(json.dumps({"batch": [track()]}).encode())
    answer = post(api, "/v1/batch", body, Authorization=BASIC, **{"Content-Encoding": "gzip"})
    assert answer.json()["events"] == 1


@pytest.mark.parametrize(
    ("path", "body", "headers", "says"),
    [
        ("/v1/track", b"{not json", {}, "not JSON"),
        ("/v1/track", b"[1, 2]", {}, "JSON object"),
        ("/v1/batch", b'{"batch": {"type": "track"}}', {}, '{"batch": [messages]}'),
        ("/v1/batch", b"plain bytes", {"Content-Encoding": "gzip"}, "not gzip"),
        ("/v1/track", json.dumps(track(properties={"x": "y" * 40_000})).encode(), {}, "MAX_MESSAGE_BYTES"),
        ("/v1/batch", json.dumps({"batch": [track(str(i)) for i in range(800)]}).encode(), {}, "MAX_BATCH"),
        ("/v1/batch", gzip.compress(b" " * 70_000 + b"{}"), {"Content-Encoding": "gzip"}, "once unzipped"),
    ],
)
def test_unreadable_or_oversized_bodies_are_400_with_a_reason(
    api: TestClient, path: str, body: bytes, headers: dict[str, str], says: str
) -> None:
    answer = post(api, path, body, Authorization=BASIC, **headers)
    assert answer.status_code == 400
    assert says in answer.json()["detail"]


def test_bad_messages_in_a_batch_are_dropped_and_named_the_rest_stored(api: TestClient) -> None:
    batch = [
        track("m-1"),
        {"type": "track", "messageId": "m-2", "event": "x"},  # nobody
        track("m-3", properties={"x": "y" * 40_000}),  # over the message limit
        track("m-4"),
    ]
    answer = post(api, "/v1/batch", {"batch": batch}, Authorization=BASIC)
    assert answer.status_code == 200
    result = answer.json()
    assert result["events"] == 2
    assert [d["index"] for d in result["dropped"]] == [1, 2]
    assert store_of(api).events.get("m-4") is not None and store_of(api).events.get("m-2") is None


def test_the_same_message_id_with_other_content_is_dropped_not_overwritten(api: TestClient) -> None:
    post(api, "/v1/track", track(), Authorization=BASIC)
    answer = post(api, "/v1/track", track(event="Other"), Authorization=BASIC).json()
    assert answer["success"] is True and answer["events"] == 0
    assert "taken by" in answer["dropped"][0]["reason"]
    stored = store_of(api).events.get("m-1")
    assert stored is not None and stored.name == "Product Viewed"


def test_analytics_js_on_an_allowed_origin_gets_cors_answers(api: TestClient) -> None:
    preflight = api.options(
        "/v1/t",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    simple = post(api, "/v1/t", track() | {"writeKey": API_KEY}, Origin="https://shop.example")
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"
    other = post(api, "/v1/t", track("m-2") | {"writeKey": API_KEY}, Origin="https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    # The rest of the API answers no browser on another origin.
    events = api.post("/v1/events", json={}, headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in events.headers


class TestRateLimit:
    @pytest.fixture
    def api_settings(self) -> dict[str, Any]:
        return {"rate_limit_per_minute": 3}

    def test_each_message_counts_and_a_batch_past_the_limit_is_429(self, api: TestClient) -> None:
        ok = post(api, "/v1/batch", {"batch": [track("1"), track("2")]}, Authorization=BASIC)
        assert ok.status_code == 200
        refused = post(api, "/v1/batch", {"batch": [track("3"), track("4")]}, Authorization=BASIC)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert store_of(api).events.get("3") is None


def test_analytics_js_own_metrics_are_acknowledged_and_dropped(api: TestClient) -> None:
    answer = post(api, "/v1/m", {"series": [{"type": "Counter", "metric": "analytics_js.invoke"}]})
    assert answer.status_code == 200 and answer.json() == {"success": True}
    assert store_of(api).events.of_customer("u-1") == []
