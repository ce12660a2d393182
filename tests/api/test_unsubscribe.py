"""Unsubscribe: a signed link, a confirmation page for GET, RFC 8058 one-click POST; and the event."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.conftest import API_KEY, SECRET
from touchflow.api.main import create_app
from touchflow.settings import Settings
from touchflow.signing import Purpose, Signer


def link(customer_id: str) -> str:
    return f"/unsubscribe/{Signer(SECRET).sign(Purpose.UNSUBSCRIBE, customer_id)}"


def consents(api: TestClient, customer_id: str) -> dict[str, object]:
    result: dict[str, object] = api.get(f"/v1/customers/{customer_id}").json()["customer"]["consents"]
    return result


def test_get_only_asks_and_post_unsubscribes_once_and_for_good(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c1", "locale": "vi", "consents": {"marketing": True}})
    page = api.get(link("c1"))
    assert page.status_code == 200
    assert "Hủy đăng ký" in page.text and "<form method='post'>" in page.text
    assert consents(api, "c1") == {"marketing": True}  # a link scanner's GET changes nothing

    api.headers.pop("Authorization")  # the customer's browser or mail client holds no key
    one_click = api.post(link("c1"), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and "Bạn đã hủy đăng ký" in one_click.text
    again = api.post(link("c1"), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    api.headers["Authorization"] = f"Bearer {API_KEY}"
    assert consents(api, "c1") == {"marketing": False}


def test_a_forged_or_mangled_link_changes_nothing(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c2"})
    forged = f"/unsubscribe/{Signer('another-secret-key').sign(Purpose.UNSUBSCRIBE, 'c2')}"
    for url in (forged, link("c2")[:-3] + "AAA", "/unsubscribe/nonsense"):
        assert api.get(url).status_code == 404
        assert api.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert consents(api, "c2") == {}


def test_the_unsubscribed_event_turns_consent_off(api: TestClient) -> None:
    api.post("/v1/customers", json={"id": "c3", "consents": {"marketing": True}})
    events = [
        {"id": "u1", "customer_id": "c3", "name": "unsubscribed", "properties": {"channel": "email"}},
        {"id": "u2", "customer_id": "c3", "name": "unsubscribed", "properties": {"channel": "zalo_zns"}},
    ]
    api.post("/v1/events/batch", json={"events": events})
    assert consents(api, "c3") == {"marketing": True, "email.marketing": False, "zalo_zns.marketing": False}
    api.post(
        "/v1/events",
        json={"id": "u3", "customer_id": "c3", "name": "unsubscribed", "properties": {"topic": "all"}},
    )
    assert consents(api, "c3")["all"] is False


def test_a_batch_item_repeating_a_taken_id_withdraws_nothing(api: TestClient) -> None:
    """The second `u5` is another event under a taken id: a conflict, not stored, so it changes no consent."""
    api.post("/v1/customers", json={"id": "c5", "consents": {"marketing": True}})
    events = [
        {"id": "u5", "customer_id": "c5", "name": "unsubscribed", "properties": {"channel": "email"}},
        {"id": "u5", "customer_id": "c5", "name": "unsubscribed", "properties": {"channel": "zalo_zns"}},
    ]
    answer = api.post("/v1/events/batch", json={"events": events}).json()
    assert [item["status"] for item in answer["results"]] == ["accepted", "conflict"]
    assert consents(api, "c5") == {"marketing": True, "email.marketing": False}


def test_links_survive_a_rotation_of_the_secret_while_it_is_a_previous_key(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    old_link = link("c4")  # signed with SECRET, in an email already sent
    stranger = f"/unsubscribe/{Signer('a-key-this-api-never-had-at-all').sign(Purpose.UNSUBSCRIBE, 'c4')}"
    rotated = make_settings(
        database_url=db_url, secret_key="the-new-secret-key-after-rotation", previous_secret_keys=SECRET
    )
    with TestClient(create_app(rotated, run_relay=False)) as api:
        api.headers["Authorization"] = f"Bearer {API_KEY}"
        api.post("/v1/customers", json={"id": "c4", "consents": {"marketing": True}})
        assert api.post(stranger, data={"List-Unsubscribe": "One-Click"}).status_code == 404
        assert consents(api, "c4") == {"marketing": True}
        assert api.post(old_link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert consents(api, "c4") == {"marketing": False}
