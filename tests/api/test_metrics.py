"""GET /metrics: events by name and status (unknown names folded), the outbox, HTTP latency by route."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY


def samples(api: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str) -> float:
    return found.get((metric, frozenset(labels.items())), 0.0)


def test_events_are_counted_by_known_name_and_status_and_the_outbox_waits(api: TestClient) -> None:
    api.headers.pop("Authorization")
    assert value(samples(api), "touchflow_outbox_depth") == 0  # no key needed: Prometheus has none
    api.headers["Authorization"] = f"Bearer {API_KEY}"
    signed_up = {"id": "e-1", "customer_id": "c-1", "name": "signed_up"}
    assert api.post("/v1/events", json=signed_up).status_code == 202
    assert api.post("/v1/events", json=signed_up).json()["status"] == "duplicate"
    # A name no journey knows: counted as `other`, so a million names are one series.
    assert api.post("/v1/events", json={**signed_up, "id": "e-2", "name": "viewed_x_1"}).status_code == 202
    assert api.post("/v1/events", json={"id": "e-3", "name": "signed_up"}).status_code == 422
    batch = [{"id": "e-4", "customer_id": "c-1", "name": "order_placed"}, {"id": "e-5", "name": "x"}]
    assert api.post("/v1/events/batch", json={"events": batch}).json()["rejected"] == 1

    found = samples(api)
    assert value(found, "touchflow_events_total", name="signed_up", status="accepted") == 1
    assert value(found, "touchflow_events_total", name="signed_up", status="duplicate") == 1
    assert value(found, "touchflow_events_total", name="signed_up", status="rejected") == 1
    assert value(found, "touchflow_events_total", name="other", status="accepted") == 1
    assert value(found, "touchflow_events_total", name="order_placed", status="accepted") == 1
    assert value(found, "touchflow_events_total", name="other", status="rejected") == 1
    assert not any(labels and ("name", "viewed_x_1") in labels for _, labels in found)
    # The relay is off here: the two journey events wait, the oldest of them a moment old.
    assert value(found, "touchflow_outbox_depth") == 2
    assert 0 <= value(found, "touchflow_outbox_oldest_seconds") < 60


def test_http_latency_is_labelled_by_route_template_not_raw_path(api: TestClient) -> None:
    for customer in ("c-1", "c-2", "c-3"):
        api.get(f"/v1/customers/{customer}")
    api.get("/no/such/path")
    found = samples(api)
    count = "touchflow_http_request_duration_seconds_count"
    template = {"method": "GET", "route": "/v1/customers/{customer_id}", "status": "404"}
    assert value(found, count, **template) == 3
    assert value(found, count, method="GET", route="unmatched", status="404") == 1
    assert not any(("route", "/v1/customers/c-1") in labels for _, labels in found)
