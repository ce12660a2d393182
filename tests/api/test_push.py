"""Push subscriptions through the HTTP API (SQLite and PostgreSQL), and the public VAPID key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from tests.support.push_service import Subscriber
from touchflow.api.main import create_app
from touchflow.encoding import b64url_encode
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.vapid import VapidKeys


def browser(name: str = "a") -> dict[str, Any]:
    """A browser's PushSubscription JSON, as a push service on the internet would have issued it."""
    subscription = Subscriber(token=name, endpoint="").to_json()
    subscription["endpoint"] = f"https://fcm.googleapis.com/fcm/send/{name}-dGVzdA"
    return subscription


@pytest.fixture
def api_settings(vapid: VapidKeys) -> dict[str, Any]:
    return {"vapid_private_key": vapid.private_key, "vapid_subject": "mailto:ops@shop.example"}


def test_a_customer_can_have_several_devices_and_reposting_updates(api: TestClient, store: Store) -> None:
    phone, laptop = browser("phone"), browser("laptop")
    first = api.post("/v1/customers/c1/push-subscriptions", json=phone)
    assert first.status_code == 201, first.text
    assert first.json()["origin"] == "https://fcm.googleapis.com"
    assert "endpoint" not in first.json()
    assert api.post("/v1/customers/c1/push-subscriptions", json=laptop).status_code == 201

    renewed = {**phone, "keys": browser("phone-again")["keys"]}
    again = api.post("/v1/customers/c1/push-subscriptions", json=renewed)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]

    stored = {s.endpoint: s for s in store.push.of_customer("c1")}
    assert set(stored) == {phone["endpoint"], laptop["endpoint"]}
    assert stored[phone["endpoint"]].p256dh == renewed["keys"]["p256dh"]
    listed = api.get("/v1/customers/c1/push-subscriptions").json()
    assert [s["id"] for s in listed] == sorted(s.id or 0 for s in stored.values())
    assert store.customers.get("c1") is not None  # an unknown customer gets a bare profile


def test_a_browser_signed_in_as_someone_else_moves_to_them(api: TestClient, store: Store) -> None:
    shared = browser("family-pc")
    api.post("/v1/customers/mum/push-subscriptions", json=shared)
    moved = api.post("/v1/customers/son/push-subscriptions", json=shared)
    assert moved.status_code == 200
    assert store.push.of_customer("mum") == []
    assert [s.endpoint for s in store.push.of_customer("son")] == [shared["endpoint"]]


def test_expiration_time_is_kept(api: TestClient, store: Store) -> None:
    subscription = {**browser(), "expirationTime": 1_900_000_000_000}
    api.post("/v1/customers/c1/push-subscriptions", json=subscription)
    [stored] = store.push.of_customer("c1")
    assert stored.expires_at is not None
    assert stored.expires_at.timestamp() == 1_900_000_000


def _with(path: str, value: Any) -> dict[str, Any]:
    subscription = copy.deepcopy(browser())
    *parents, last = path.split(".")
    target = subscription
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return subscription


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (_with("endpoint", "http://fcm.googleapis.com/fcm/send/x"), "endpoint", "https URL"),
        (_with("endpoint", "not a url"), "endpoint", "https URL"),
        (_with("endpoint", ...), "endpoint", "Field required"),
        (_with("keys", ...), "keys", "Field required"),
        (_with("keys.p256dh", b64url_encode(b"\x04" + bytes(63))), "keys.p256dh", "65 bytes), got 64"),
        (_with("keys.p256dh", b64url_encode(b"\x02" + bytes(64))), "keys.p256dh", "uncompressed P-256 point"),
        (_with("keys.p256dh", "not base64!"), "keys.p256dh", "not base64url"),
        (_with("keys.auth", b64url_encode(bytes(15))), "keys.auth", "16 bytes), got 15"),
        (_with("keys.auth", ...), "keys.auth", "Field required"),
        (_with("expirationTime", "tomorrow"), "expirationTime", "valid number"),
        (_with("endpoint", "https://fcm.googleapis.com/fcm/send/x\x00y"), "endpoint", "NUL"),
        (_with("user_agent", "Chrome\x00"), "user_agent", "NUL"),
    ],
)
def test_a_bad_subscription_gets_a_422_naming_the_field(
    api: TestClient, store: Store, body: dict[str, Any], field: str, says: str
) -> None:
    response = api.post("/v1/customers/c1/push-subscriptions", json=body)
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"{field}: "), message
    assert says in message
    assert store.push.of_customer("c1") == []


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://internal.shop.example/push/x", "internal.shop.example"),
        (
            "https://fcm.googleapis.com.internal.shop.example/fcm/send/x",
            "fcm.googleapis.com.internal.shop.example",
        ),
        ("https://storage.googleapis.com/a-bucket/x", "storage.googleapis.com"),
        ("https://push.apple.com/x", "push.apple.com"),  # `*.push.apple.com` is its subdomains only
        ("https://127.0.0.1:8080/push/x", "127.0.0.1"),
    ],
)
def test_an_endpoint_off_the_push_service_hosts_gets_422_and_is_not_stored(
    api: TestClient, store: Store, endpoint: str, host: str
) -> None:
    response = api.post("/v1/customers/c1/push-subscriptions", json=_with("endpoint", endpoint))
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"endpoint: {host} is not a push service host"), message
    assert "TOUCHFLOW_PUSH_SERVICE_HOSTS" in message
    assert store.push.of_customer("c1") == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://user:secret@fcm.googleapis.com/fcm/send/x",
        "https://internal.shop.example@fcm.googleapis.com/fcm/send/x",
        "https://@fcm.googleapis.com/fcm/send/x",
    ],
)
def test_an_endpoint_with_user_info_gets_422(api: TestClient, store: Store, endpoint: str) -> None:
    response = api.post("/v1/customers/c1/push-subscriptions", json=_with("endpoint", endpoint))
    assert response.status_code == 422
    assert response.json()["message"].startswith("endpoint: must not carry a user name or password")
    assert store.push.of_customer("c1") == []


@pytest.mark.parametrize(
    ("endpoint", "status"),
    [
        ("https://push.internal.shop.example/push/x", 201),  # listed; resolves to a private address
        ("https://10.1.2.3/push/x", 201),
        ("http://10.1.2.3/push/x", 422),  # listed for https only
        ("http://push.lab.shop.example:8080/push/x", 201),  # listed as http://
        ("https://10.1.2.4/push/x", 422),  # the next address is no push service
        ("https://fcm.googleapis.com/fcm/send/x", 422),  # the setting replaces the default list
    ],
)
def test_a_self_hosted_push_service_is_allowed_by_naming_it(
    sqlite_store: Store, make_settings: Callable[..., Settings], endpoint: str, status: int
) -> None:
    hosts = "push.internal.shop.example, 10.1.2.3, http://push.lab.shop.example"
    settings = make_settings(database_url=str(sqlite_store.engine.url), push_service_hosts=hosts)
    with TestClient(
        create_app(settings, run_relay=False), headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        response = api.post("/v1/customers/c1/push-subscriptions", json=_with("endpoint", endpoint))
    assert response.status_code == status, response.text
    assert len(sqlite_store.push.of_customer("c1")) == (status == 201)


def test_past_20_subscriptions_the_least_recently_saved_is_dropped(api: TestClient, store: Store) -> None:
    devices = [browser(f"d{n}") for n in range(22)]
    for device in devices[:20]:
        assert api.post("/v1/customers/c1/push-subscriptions", json=device).status_code == 201
    # the first device posts again (the browser came back): it is now the most recent one
    assert api.post("/v1/customers/c1/push-subscriptions", json=devices[0]).status_code == 200
    for device in devices[20:]:
        assert api.post("/v1/customers/c1/push-subscriptions", json=device).status_code == 201
    kept = {s.endpoint for s in store.push.of_customer("c1")}
    assert len(kept) == 20
    assert kept == {d["endpoint"] for d in [devices[0], *devices[3:]]}
    # a browser moving to another customer counts for that customer alone
    assert api.post("/v1/customers/c2/push-subscriptions", json=devices[5]).status_code == 200
    assert len(store.push.of_customer("c1")) == 19
    assert len(store.push.of_customer("c2")) == 1


def test_subscriptions_need_the_api_key(api: TestClient) -> None:
    api.headers.pop("Authorization")
    assert api.post("/v1/customers/c1/push-subscriptions", json=browser()).status_code == 401
    assert api.get("/v1/customers/c1/push-subscriptions").status_code == 401
    assert api.delete("/v1/customers/c1/push-subscriptions", params={"endpoint": "x"}).status_code == 401


def test_delete_forgets_one_subscription(api: TestClient, store: Store) -> None:
    phone, laptop = browser("phone"), browser("laptop")
    for subscription in (phone, laptop):
        api.post("/v1/customers/c1/push-subscriptions", json=subscription)

    url = "/v1/customers/c1/push-subscriptions"
    assert api.delete(url, params={"endpoint": phone["endpoint"]}).status_code == 204
    assert [s.endpoint for s in store.push.of_customer("c1")] == [laptop["endpoint"]]

    again = api.delete(url, params={"endpoint": phone["endpoint"]})
    assert again.status_code == 404
    other = api.delete("/v1/customers/c2/push-subscriptions", params={"endpoint": laptop["endpoint"]})
    assert other.status_code == 404
    assert api.delete(url).status_code == 422


def test_the_vapid_public_key_is_public(api: TestClient, vapid: VapidKeys) -> None:
    api.headers.pop("Authorization")
    response = api.get("/v1/push/vapid-public-key", headers={"Origin": "https://shop.example"})
    assert response.status_code == 200
    assert response.json() == {"public_key": vapid.public_key}
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_without_vapid_keys_the_public_key_is_not_found(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=str(sqlite_store.engine.url))
    with TestClient(create_app(settings, run_relay=False)) as client:
        response = client.get("/v1/push/vapid-public-key")
    assert response.status_code == 404
    assert "TOUCHFLOW_VAPID_PRIVATE_KEY" in response.json()["detail"]
