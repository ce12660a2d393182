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
from touchflow.models import CustomerIn, EventIn
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


def test_a_segment_event_sent_to_track_is_dropped_not_stored(api: TestClient) -> None:
    answer = post(api, "/v1/track", track("m-seg", event="segment_entered:vip"), Authorization=BASIC).json()
    assert answer["events"] == 0
    assert "a client cannot send them" in answer["dropped"][0]["reason"]
    assert store_of(api).events.get("m-seg") is None


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


# -- a key in a browser page (scope `track`) ----------------------------------------------------------------

BROWSER_KEY = "tfk_browser_page_key_0123456789abcdef"


class TestBrowserKey:
    @pytest.fixture
    def api_settings(self) -> dict[str, Any]:
        return {"api_keys": [API_KEY, f"track:{BROWSER_KEY}"]}

    def test_it_sends_events_and_nothing_else(self, api: TestClient) -> None:
        assert post(api, "/v1/t", track() | {"writeKey": BROWSER_KEY}).json()["events"] == 1
        other = api.post("/v1/events", json={}, headers={"Authorization": f"Bearer {BROWSER_KEY}"})
        assert other.status_code == 403 and "'ingest' scope" in other.json()["detail"]

    def test_it_speaks_for_a_stored_customer_only_with_their_token(self, api: TestClient) -> None:
        store = store_of(api)
        store.customers.upsert(CustomerIn(id="lan-42", email="lan@example.vn"))
        store.events.ingest([EventIn(id="v", customer_id="anon:attacker", name="page_viewed")], ())
        takeover = {
            "writeKey": BROWSER_KEY,
            "userId": "lan-42",
            "anonymousId": "attacker",
            "traits": {"email": "attacker@evil.example"},
        }
        answer = post(api, "/v1/identify", takeover).json()
        assert answer["dropped"][0]["reason"].startswith("a browser key (scope track)")
        customer = store.customers.get("lan-42")
        assert customer is not None and customer.email == "lan@example.vn"
        assert store.identities.known_as("anon:attacker") is None
        # The page of the logged-in customer carries their token (the inbox token of the id): it may.
        signer = api.app.state.signer  # type: ignore[attr-defined]
        mine = {**takeover, "traits": {"email": "lan.new@example.vn"}}
        mine["context"] = {"touchflow_token": signer.customer_token("lan-42")}
        assert post(api, "/v1/identify", mine).json()["dropped"] == []
        customer = store.customers.get("lan-42")
        assert customer is not None and customer.email == "lan.new@example.vn"
        assert store.identities.known_as("anon:attacker") == "lan-42"

    def test_a_new_customer_needs_no_token_and_an_alias_reveals_nobody(self, api: TestClient) -> None:
        signup = {"writeKey": BROWSER_KEY, "userId": "new-1", "anonymousId": "v-1", "traits": {"plan": "x"}}
        assert post(api, "/v1/identify", signup).json()["dropped"] == []
        store_of(api).customers.upsert(CustomerIn(id="someone"))
        alias = {"writeKey": BROWSER_KEY, "userId": "new-2", "previousId": "someone"}
        assert post(api, "/v1/alias", alias).json()["dropped"][0]["reason"] == "alias: not merged"


def test_hostile_bodies_are_400_or_401_never_500(api: TestClient) -> None:
    deep = b'{"batch": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert post(api, "/v1/batch", deep, Authorization=BASIC).status_code == 400
    surrogate = b'{"writeKey": "\\ud800", "type": "track"}'
    assert post(api, "/v1/track", surrogate).status_code == 401


def test_vietnamese_text_is_measured_as_sent_and_broken_context_text_is_mended(api: TestClient) -> None:
    # About 28 KB in UTF-8 (as the libraries send it), 46 KB as ASCII escapes: within the 32 KB limit.
    long = {"note": "Giỏ hàng của bạn vẫn được giữ. " * 600}
    message = track("vi", properties=long, context={"page": {"title": "Sale \ud83d"}})
    body = json.dumps({"batch": [message]}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    answer = post(api, "/v1/batch", body, Authorization=BASIC).json()
    assert (answer["events"], answer["dropped"]) == (1, [])
    stored = store_of(api).events.get("vi")
    assert stored is not None and stored.context is not None
    assert stored.context["page"]["title"] == "Sale \ufffd"
    assert stored.context["ip"] == "testclient"  # the sender's address, which analytics.js leaves out


def test_an_identify_whose_traits_cannot_be_used_still_merges(api: TestClient) -> None:
    store_of(api).events.ingest([EventIn(id="seen", customer_id="anon:v-7", name="page_viewed")], ())
    bad = {"userId": "u-7", "anonymousId": "v-7", "traits": {"bad": 1e400}}  # JSON's Infinity
    post(api, "/v1/identify", json.dumps(bad).replace("1e400", "Infinity").encode(), Authorization=BASIC)
    assert store_of(api).identities.known_as("anon:v-7") == "u-7"


def test_the_log_names_kinds_of_drops_not_what_was_sent(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    post(
        api,
        "/v1/batch",
        {"batch": [{"type": "lan@example.vn +84901234567", "userId": "u"}]},
        Authorization=BASIC,
    )
    [record] = [r for r in caplog.records if r.getMessage() == "segment messages dropped"]
    assert record.reasons == {"bad_type": 1}  # type: ignore[attr-defined]
    assert "lan@example.vn" not in str(record.__dict__)


class TestBodyLimit:
    @pytest.fixture
    def api_settings(self) -> dict[str, Any]:
        return {"max_body_bytes": 2048}

    def test_a_body_over_the_api_limit_is_400_on_the_tracking_paths(self, api: TestClient) -> None:
        body = {"batch": [track(str(i)) for i in range(40)]}
        assert post(api, "/v1/batch", body, Authorization=BASIC).status_code == 400
        assert api.post("/v1/events/batch", json=body).status_code == 413
