"""Scoped keys, rotation, rate limits and body size limits at the API's door."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from touchflow.api.main import create_app
from touchflow.apikeys import digest
from touchflow.settings import Settings

INGEST_KEY = "ingest-only-key"
OLD_KEY, NEW_KEY = "rotating-old-key", "rotating-new-key"


@pytest.fixture
def make_api(db_url: str, make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**settings: object) -> TestClient:
        app = create_app(make_settings(database_url=db_url, **settings), run_relay=False)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_ingest_key_sends_events_but_cannot_read_profiles(make_api: Callable[..., TestClient]) -> None:
    api = make_api(api_keys=[f"ingest:{INGEST_KEY}", "admin-key-123"])
    event = {"id": "e1", "customer_id": "c1", "name": "signed_up"}
    assert api.post("/v1/events", json=event, headers=bearer(INGEST_KEY)).status_code == 202
    assert api.post("/v1/customers", json={"id": "c1"}, headers=bearer(INGEST_KEY)).status_code == 200
    refused = api.get("/v1/customers/c1", headers=bearer(INGEST_KEY))
    assert refused.status_code == 403
    assert "lacks the 'read' scope" in refused.json()["detail"]
    assert INGEST_KEY not in refused.text
    assert api.get("/v1/customers/c1", headers=bearer("admin-key-123")).status_code == 200


def test_keys_can_be_given_hashed_and_rotated(make_api: Callable[..., TestClient]) -> None:
    api = make_api(api_keys=[OLD_KEY, f"sha256={digest(NEW_KEY).hex()}"])
    for key in (OLD_KEY, NEW_KEY):
        assert api.get("/v1/customers/nobody", headers=bearer(key)).status_code == 404
    assert (
        api.get("/v1/customers/nobody", headers=bearer("sha256=" + digest(NEW_KEY).hex())).status_code == 401
    )


def test_past_the_rate_limit_a_key_gets_429_with_retry_after(make_api: Callable[..., TestClient]) -> None:
    api = make_api(api_keys=["key-one-123", "key-two-123"], rate_limit_per_minute=3)
    answers = [api.get("/v1/customers/x", headers=bearer("key-one-123")).status_code for _ in range(4)]
    assert answers == [404, 404, 404, 429]
    limited = api.get("/v1/customers/x", headers=bearer("key-one-123"))
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "TOUCHFLOW_RATE_LIMIT_PER_MINUTE" in limited.json()["detail"]
    # another key has its own budget, and a second API process sees the same counts
    assert api.get("/v1/customers/x", headers=bearer("key-two-123")).status_code == 404
    other_process = make_api(api_keys=["key-one-123"], rate_limit_per_minute=3)
    assert other_process.get("/v1/customers/x", headers=bearer("key-one-123")).status_code == 429


def batch(tag: str, size: int) -> dict[str, list[dict[str, str]]]:
    return {"events": [{"id": f"{tag}-{i}", "customer_id": "c", "name": "page_viewed"} for i in range(size)]}


def test_a_batch_counts_each_event_toward_the_rate_limit(make_api: Callable[..., TestClient]) -> None:
    api = make_api(rate_limit_per_minute=1500)
    store = api.app.state.store  # type: ignore[attr-defined]
    assert api.post("/v1/events/batch", json=batch("a", 1000), headers=bearer(API_KEY)).status_code == 200
    # 1,000 counted: a second batch of 1,000 would go past 1,500, so none of it is stored
    refused = api.post("/v1/events/batch", json=batch("b", 1000), headers=bearer(API_KEY))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "TOUCHFLOW_RATE_LIMIT_PER_MINUTE" in refused.json()["detail"]
    assert store.events.get("b-0") is None and store.events.get("b-999") is None
    # what is left of the minute still fits a smaller batch, then the budget is spent
    assert api.post("/v1/events/batch", json=batch("c", 500), headers=bearer(API_KEY)).status_code == 200
    single = {"id": "d-0", "customer_id": "c", "name": "page_viewed"}
    assert api.post("/v1/events", json=single, headers=bearer(API_KEY)).status_code == 429


def test_failed_authentication_is_limited_per_client_address(
    make_api: Callable[..., TestClient], make_settings: Callable[..., Settings], db_url: str
) -> None:
    api = make_api()
    answers = [api.get("/v1/customers/x", headers=bearer(f"guess-{i:04d}")).status_code for i in range(21)]
    assert answers == [401] * 20 + [429]
    limited = api.get("/v1/customers/x", headers=bearer("guess-0021"))
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "TOUCHFLOW_AUTH_FAILURES_PER_MINUTE" in limited.json()["detail"]
    # Past the limit even the right key is not tried from that address, so guessing learns nothing more.
    assert api.get("/v1/customers/x", headers=bearer(API_KEY)).status_code == 429
    # Counted in the database: another API process refuses that address too; other addresses go on.
    app = create_app(make_settings(database_url=db_url), run_relay=False)
    with TestClient(app) as other_process:
        assert other_process.get("/v1/customers/x", headers=bearer(API_KEY)).status_code == 429
    with TestClient(app, client=("203.0.113.9", 50000)) as elsewhere:
        assert elsewhere.get("/v1/customers/x", headers=bearer(API_KEY)).status_code == 404
        assert elsewhere.get("/v1/customers/x", headers=bearer("guess-9999")).status_code == 401


def test_a_body_over_the_limit_gets_413_and_nothing_is_stored(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_body_bytes=2048)
    events = [{"id": f"e{i}", "customer_id": "c", "name": "page_viewed"} for i in range(100)]
    response = api.post("/v1/events/batch", json={"events": events}, headers=bearer(API_KEY))
    assert response.status_code == 413
    assert "TOUCHFLOW_MAX_BODY_BYTES" in response.json()["detail"]
    assert api.app.state.store.events.get("e0") is None  # type: ignore[attr-defined]


def test_a_streamed_body_over_the_limit_gets_413(make_api: Callable[..., TestClient]) -> None:
    api = make_api(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for i in range(200):
            yield b'{"id": "s%d", "customer_id": "c", "name": "x"},' % i
        yield b"{}]}"

    response = api.post(
        "/v1/events/batch",
        content=chunks(),
        headers=bearer(API_KEY) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("method", "url", "where"),
    [
        ("GET", "/v1/customers/a%00b", "path"),
        ("DELETE", "/v1/customers/a%00b", "path"),
        ("DELETE", "/v1/customers/c-1/push-subscriptions?endpoint=https://push.example/a%00b", "query"),
        ("GET", "/v1/inbox/messages?cursor=%00", "query"),
    ],
)
def test_a_nul_in_the_url_is_422_whatever_the_route(
    api: TestClient, method: str, url: str, where: str
) -> None:
    response = api.request(method, url)
    assert response.status_code == 422
    assert response.json()["message"].startswith(f"{where}: must not hold a NUL character (%00)")
