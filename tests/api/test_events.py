"""POST /v1/events and /v1/events/batch: auth, validation, duplicates, partially invalid batches."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from touchflow.api.routes.events import entry_key_errors
from touchflow.journeys import Journey, JourneyEvent, journey
from touchflow.models import EventIn
from touchflow.storage import Store
from touchflow.testing import registry_of


def event(id: str = "e-1", **fields: Any) -> dict[str, Any]:
    return {"id": id, "customer_id": "c-1", "name": "signed_up", **fields}


def store_of(api: TestClient) -> Store:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    return store


def post_json_text(api: TestClient, path: str, text: str) -> Any:
    """Send JSON as written: `NaN`, `Infinity` and lone surrogates, which a JSON encoder would not write."""
    return api.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no header"),
        ({"Authorization": "Bearer wrong"}, "unknown key"),
        ({"Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()}, "not a bearer"),
        ({"Authorization": "Bearer "}, "empty key"),
    ],
)
def test_a_missing_or_wrong_key_gets_401_and_stores_nothing(
    api: TestClient, headers: dict[str, str], why: str
) -> None:
    api.headers.pop("Authorization")
    response = api.post("/v1/events", json=event(), headers=headers)
    assert response.status_code == 401, why
    assert "TOUCHFLOW_API_KEYS" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert store_of(api).events.get("e-1") is None


def test_an_event_is_stored_and_queued_for_its_journeys(api: TestClient) -> None:
    response = api.post("/v1/events", json=event(properties={"plan": "free"}))
    assert response.status_code == 202
    assert response.json() == {"id": "e-1", "status": "accepted"}
    stored = store_of(api).events.get("e-1")
    assert stored is not None and stored.properties == {"plan": "free"}
    assert store_of(api).outbox.size() == 1


def test_an_event_no_journey_cares_about_is_stored_but_not_relayed(api: TestClient) -> None:
    assert api.post("/v1/events", json=event(name="page_viewed")).status_code == 202
    assert store_of(api).events.get("e-1") is not None
    assert store_of(api).outbox.size() == 0


def test_an_unknown_customer_gets_a_bare_profile(api: TestClient) -> None:
    api.post("/v1/events", json=event(customer_id="new-one"))
    profile = api.get("/v1/customers/new-one").json()
    assert profile["customer"]["email"] is None
    assert [e["id"] for e in profile["events"]] == ["e-1"]


def test_a_repeated_id_is_a_duplicate_and_changes_nothing(api: TestClient) -> None:
    first = event(properties={"v": 1, "items": [{"sku": "a", "price": 1.5}]})
    assert api.post("/v1/events", json=first).json()["status"] == "accepted"
    # The same event sent again (a retry), with its own timestamp: the content is what names it.
    again = api.post("/v1/events", json=first | {"timestamp": "2026-01-01T00:00:00Z"})
    assert again.status_code == 202
    assert again.json() == {"id": "e-1", "status": "duplicate"}
    stored = store_of(api).events.get("e-1")
    assert stored is not None and stored.properties == first["properties"]
    assert store_of(api).outbox.size() == 1


@pytest.mark.parametrize(
    ("other", "hint"),
    [
        (event(customer_id="c-2", properties={"v": 1}), "another customer"),
        (event(name="page_viewed", properties={"v": 1}), "other content"),
        (event(properties={"v": 2}), "other content"),
        (event(), "other content"),
    ],
)
def test_an_id_already_taken_by_another_event_is_409(
    api: TestClient, other: dict[str, Any], hint: str
) -> None:
    assert api.post("/v1/events", json=event(properties={"v": 1})).json()["status"] == "accepted"
    response = api.post("/v1/events", json=other)
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "e-1" in detail and hint in detail and "new id" in detail
    stored = store_of(api).events.get("e-1")
    assert stored is not None and (stored.customer_id, stored.properties) == ("c-1", {"v": 1})
    assert store_of(api).outbox.size() == 1


def test_a_batch_reports_a_conflicting_item_by_index_and_stores_the_rest(api: TestClient) -> None:
    api.post("/v1/events", json=event("taken", properties={"v": 1}))
    batch = [
        event("k-1"),
        event("taken", properties={"v": 2}),  # the id of a stored event with other content
        event("k-1", customer_id="c-2"),  # the id of an earlier item of this batch, another customer
        event("taken", properties={"v": 1}),  # the same event again
        event("k-2"),
    ]
    response = api.post("/v1/events/batch", json={"events": batch})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["conflicts"], body["rejected"]) == (2, 1, 2, 0)
    results = {r["index"]: r for r in body["results"]}
    assert [results[i]["status"] for i in range(5)] == [
        "accepted",
        "conflict",
        "conflict",
        "duplicate",
        "accepted",
    ]
    assert "other content" in results[1]["errors"][0]
    assert "another customer" in results[2]["errors"][0]
    stored = store_of(api).events.get("k-1")
    assert stored is not None and stored.customer_id == "c-1"
    assert store_of(api).events.get("k-2") is not None


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"customer_id": "c-1", "name": "signed_up"}, "id", "Field required"),
        (event(name="two\nlines"), "name", "control characters"),
        (event(name="segment_entered:vip"), "name", "segment_entered:* and segment_exited:* are the events"),
        (event(name=" segment_exited:vip"), "name", "a client cannot send them"),
        (event(name=""), "name", "at least 1"),
        (event(customer_id="a/b"), "customer_id", "pattern"),
        (event(id="x" * 129), "id", "at most 128"),
        (event(customer_id="c" * 129), "customer_id", "at most 128"),
        (event(name="n" * 101), "name", "at most 100"),
        (event(id="o-1\r\nX-Evil: 1"), "id", "pattern"),
        (event(timestamp="yesterday"), "timestamp", "datetime"),
        (event(properties=[1, 2]), "properties", "dictionary"),
        (event(colour="red"), "colour", "Extra inputs"),
    ],
)
def test_invalid_events_get_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str, hint: str
) -> None:
    response = api.post("/v1/events", json=body)
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert hint in message
    assert store_of(api).events.get(str(body.get("id"))) is None


def test_a_body_that_is_not_json_gets_422(api: TestClient) -> None:
    response = api.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.json()["message"]


def test_a_batch_stores_the_valid_events_and_names_each_rejected_one(api: TestClient) -> None:
    api.post("/v1/events", json=event("seen-before"))
    batch = [
        event("b-1"),
        {"id": "b-2", "name": "signed_up"},  # no customer_id
        event("seen-before"),
        event("b-3", name="cart\tupdated"),  # bad name
        event("b-4", name="order_placed", properties={"order_id": "o-1"}),
        event("b-1"),  # repeated inside the batch
        event("b-5", name="segment_exited:vip"),  # touchflow's own
    ]
    response = api.post("/v1/events/batch", json={"events": batch})
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 2, 3)
    results = {r["index"]: r for r in body["results"]}
    assert [results[i]["status"] for i in range(7)] == [
        "accepted",
        "rejected",
        "duplicate",
        "rejected",
        "accepted",
        "duplicate",
        "rejected",
    ]
    assert results[1]["errors"] == ["customer_id: Field required"]
    assert results[1]["id"] == "b-2"
    assert results[3]["errors"][0].startswith("name: must not hold line breaks")
    assert "a client cannot send them" in results[6]["errors"][0]
    store = store_of(api)
    assert store.events.get("b-1") is not None and store.events.get("b-4") is not None
    assert store.events.get("b-2") is None and store.events.get("b-3") is None


def test_resending_a_whole_batch_is_safe(api: TestClient) -> None:
    batch = {"events": [event(f"r-{i}") for i in range(5)]}
    assert api.post("/v1/events/batch", json=batch).json()["accepted"] == 5
    again = api.post("/v1/events/batch", json=batch).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)
    assert store_of(api).outbox.size() == 5


def test_a_batch_over_the_limit_is_refused_whole(api: TestClient) -> None:
    response = api.post("/v1/events/batch", json={"events": [event(f"x-{i}") for i in range(1001)]})
    assert response.status_code == 413
    assert "at most 1000" in response.json()["detail"]
    assert store_of(api).events.get("x-0") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "events: Field required"),
        ({"events": "nope"}, "events: Input should be a valid list"),
        ({"events": ["nope"]}, "events.0: Input should be a valid dictionary"),
    ],
)
def test_a_malformed_batch_gets_422(api: TestClient, body: dict[str, Any], message: str) -> None:
    response = api.post("/v1/events/batch", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(message)


def test_properties_are_bounded(api: TestClient) -> None:
    response = api.post("/v1/events", json=event(properties={"blob": "x" * 40_000}))
    assert response.status_code == 422
    assert response.json()["message"].startswith("properties: Value error, at most 32 KiB of JSON")


def _in(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


@pytest.mark.parametrize(
    ("timestamp", "hint"),
    [
        pytest.param("2026-03-01T09:30:00", "time zone", id="naive: whose 09:30?"),
        pytest.param("2026-03-01", "time zone", id="a date"),
        pytest.param("1999-12-31T23:59:59Z", "2000-01-01", id="last century"),
        pytest.param("0001-01-01T00:00:00+00:00", "2000-01-01", id="year 1"),
        pytest.param("0001-01-01T00:00:00+01:00", "2000-01-01", id="before any UTC time"),
        # From the moment the test runs, not when it was collected (the suite may take longer than 5 minutes).
        pytest.param(timedelta(days=1, minutes=5), "a day", id="over a day ahead"),
        pytest.param("9999-12-31T23:59:59+14:00", "a day", id="year 9999"),
    ],
)
def test_a_timestamp_needs_a_time_zone_and_a_sane_date(
    api: TestClient, timestamp: str | timedelta, hint: str
) -> None:
    if isinstance(timestamp, timedelta):
        timestamp = _in(timestamp)
    response = api.post("/v1/events", json=event(timestamp=timestamp))
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("timestamp:"), message
    assert hint in message
    assert store_of(api).events.get("e-1") is None


@pytest.mark.parametrize(
    "timestamp",
    ["2000-01-01T00:00:00Z", "2026-03-01T09:30:00+07:00", _in(timedelta(hours=23)), 1767225600],
    ids=["2000", "+07:00", "23 hours ahead", "unix seconds"],
)
def test_a_zoned_timestamp_in_range_is_kept(api: TestClient, timestamp: str | int) -> None:
    assert api.post("/v1/events", json=event(timestamp=timestamp)).status_code == 202
    stored = store_of(api).events.get("e-1")
    assert stored is not None and stored.occurred_at.tzinfo is not None


def written(id: str = '"e-1"', customer_id: str = '"c-1"', properties: str = "{}") -> str:
    """An event's JSON as a client wrote it (each argument is JSON text)."""
    return f'{{"id": {id}, "customer_id": {customer_id}, "name": "signed_up", "properties": {properties}}}'


UNSTORABLE_EVENTS = [
    # (the JSON, the field the message starts with, a word it holds)
    pytest.param(written(id=r'"e\u0000"'), "id", "NUL", id="NUL in the id"),
    pytest.param(written(customer_id=r'"c\u0000"'), "customer_id", "NUL", id="NUL in the customer id"),
    pytest.param(written(id=r'"e-\udfff"'), "id", "surrogate", id="lone surrogate in the id"),
    pytest.param(written(properties=r'{"a\u0000": 1}'), "properties", "NUL", id="NUL in a property name"),
    pytest.param(
        written(properties=r'{"items": [{"sku": "x\u0000"}]}'),
        "properties",
        "items.0.sku",
        id="NUL deep in a property",
    ),
    pytest.param(written(properties=r'{"a": "\ud800"}'), "properties", "surrogate", id="lone surrogate"),
    pytest.param(written(properties=r'{"\udc00": 1}'), "properties", "surrogate", id="surrogate name"),
    pytest.param(written(properties='{"total": NaN}'), "properties", "finite", id="NaN"),
    pytest.param(written(properties='{"total": Infinity}'), "properties", "total", id="Infinity"),
    pytest.param(written(properties='{"x": [-Infinity]}'), "properties", "finite", id="-Infinity"),
]


@pytest.mark.parametrize(("text", "field", "hint"), UNSTORABLE_EVENTS)
def test_text_and_numbers_no_database_can_hold_get_422_naming_the_field(
    api: TestClient, text: str, field: str, hint: str
) -> None:
    response = post_json_text(api, "/v1/events", text)
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"{field}:"), message
    assert hint in message
    assert store_of(api).events.get("e-1") is None


def test_each_new_rule_is_judged_per_item_of_a_batch(api: TestClient) -> None:
    items = [json.dumps(event("ok-1")), *(param.values[0] for param in UNSTORABLE_EVENTS)]
    items += [
        json.dumps(event("naive", timestamp="2026-03-01T09:30:00")),
        json.dumps(event("ancient", timestamp="1970-01-01T00:00:00Z")),
        written(id=r'"\ud800"'),  # an id that cannot be echoed back
        json.dumps(event("ok-2")),
    ]
    response = post_json_text(api, "/v1/events/batch", '{"events": [' + ", ".join(items) + "]}")
    assert response.status_code == 200
    body = response.json()
    rejected = len(items) - 2
    assert (body["accepted"], body["rejected"]) == (2, rejected)
    results = {r["index"]: r for r in body["results"]}
    assert [results[i]["status"] for i in (0, len(items) - 1)] == ["accepted", "accepted"]
    for index in range(1, len(items) - 1):
        assert results[index]["status"] == "rejected" and results[index]["errors"], results[index]
    assert results[len(items) - 2]["id"] is None
    store = store_of(api)
    assert store.events.get("ok-1") is not None and store.events.get("ok-2") is not None
    assert store.events.get("naive") is None and store.events.get("e-1") is None


# Built-in journeys keyed by a property: abandoned_cart by `cart_id` (it starts on cart_updated, ends on
# cart_cleared and order_placed), post_purchase by `order_id` (order_placed).
@pytest.mark.parametrize(
    ("name", "key", "value", "hint"),
    [
        pytest.param("cart_updated", "cart_id", "k" * 129, "at most 128 characters", id="a cart id too long"),
        pytest.param("cart_cleared", "cart_id", "k" * 129, "at most 128 characters", id="on an exit too"),
        pytest.param("order_placed", "order_id", "o" * 200, "at most 128 characters", id="an order id"),
        pytest.param("order_placed", "order_id", "o-1\r\nBcc: all@x.example", "line break", id="CR/LF"),
        pytest.param("order_placed", "cart_id", "k-1\n", "line break", id="LF in the cart id of an order"),
        pytest.param("order_placed", "order_id", "o-1\tx", "control", id="a tab"),
        pytest.param("cart_updated", "cart_id", "", "empty", id="empty"),
        pytest.param("cart_updated", "cart_id", {"id": 1}, "a string or a number", id="an object"),
        pytest.param("cart_updated", "cart_id", True, "a string or a number", id="a boolean"),
    ],
)
def test_an_entry_key_that_would_not_fit_its_columns_or_ids_gets_422(
    api: TestClient, name: str, key: str, value: Any, hint: str
) -> None:
    response = api.post("/v1/events", json=event(name=name, properties={key: value}))
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"properties.{key}:"), message
    assert hint in message
    assert store_of(api).events.get("e-1") is None


def test_entry_keys_up_to_the_bound_are_kept_and_other_events_are_not_bounded(api: TestClient) -> None:
    cart = event("cart", name="cart_updated", properties={"cart_id": "k" * 128})
    order = event("order", name="order_placed", properties={"order_id": 1234567, "cart_id": "k-1"})
    viewed = event("viewed", name="page_viewed", properties={"cart_id": "k" * 300, "order_id": "a\nb"})
    for body in (cart, order, viewed):
        assert api.post("/v1/events", json=body).status_code == 202, body


def test_a_batch_rejects_an_item_with_a_bad_entry_key_by_index_and_stores_the_rest(api: TestClient) -> None:
    batch = [
        event("b-1", name="cart_updated", properties={"cart_id": "k-1"}),
        event("b-2", name="cart_updated", properties={"cart_id": "k" * 129}),
        event("b-3", name="order_placed", properties={"order_id": "o-1\r\n"}),
        event("b-4", name="order_placed", properties={"order_id": "o-1"}),
    ]
    body = api.post("/v1/events/batch", json={"events": batch}).json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    results = {r["index"]: r for r in body["results"]}
    assert [results[i]["status"] for i in range(4)] == ["accepted", "rejected", "rejected", "accepted"]
    assert results[1]["id"] == "b-2" and results[1]["errors"][0].startswith("properties.cart_id:")
    assert results[2]["errors"][0].startswith("properties.order_id:")
    assert store_of(api).events.get("b-2") is None and store_of(api).events.get("b-4") is not None


@journey(starts_on="cart_updated", key="cart_id", name="cart_" + "x" * 45)
class LongNamed(Journey):
    """A journey whose name leaves less room in its workflow ids than a customer id and key can fill."""

    async def plan(self, trigger: JourneyEvent) -> None:
        pass


def test_an_entry_key_whose_workflow_id_would_not_fit_its_columns_is_refused() -> None:
    registry = registry_of(LongNamed)
    fits = EventIn(id="e", customer_id="c" * 128, name="cart_updated", properties={"cart_id": "k" * 120})
    assert entry_key_errors(fits, registry) == []
    over = fits.model_copy(update={"properties": {"cart_id": "k" * 128}})
    [error] = entry_key_errors(over, registry)
    assert error["loc"] == ("body", "properties", "cart_id")
    assert "workflow id" in error["msg"] and "308 characters long, over 300" in error["msg"]
