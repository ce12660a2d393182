"""/v1/segments: define, read, page members, change, delete; declared segments are read-only; the profile
shows its segments and lifecycle stage."""

from __future__ import annotations

from fastapi.testclient import TestClient

HANOI = {"attribute": "city", "op": "eq", "value": "Hà Nội"}


def test_a_segment_is_created_read_paged_changed_and_deleted(api: TestClient) -> None:
    for i in range(5):
        city = "Hà Nội" if i % 2 == 0 else "Huế"
        assert (
            api.post("/v1/customers", json={"id": f"c{i}", "attributes": {"city": city}}).status_code == 201
        )
    created = api.post("/v1/segments", json={"name": "hanoi", "description": "HN", "condition": HANOI})
    assert created.status_code == 201, created.text
    assert created.json() == {
        "name": "hanoi",
        "description": "HN",
        "condition": HANOI,
        "source": "api",
        "size": 3,
    }
    assert api.post("/v1/segments", json={"name": "hanoi", "condition": HANOI}).status_code == 409
    assert api.get("/v1/segments/hanoi").json()["size"] == 3
    names = [s["name"] for s in api.get("/v1/segments").json()]
    assert "hanoi" in names and "lifecycle:new_lead" in names

    first = api.get("/v1/segments/hanoi/members", params={"limit": 2}).json()
    assert [m["customer_id"] for m in first["members"]] == ["c0", "c2"]
    rest = api.get("/v1/segments/hanoi/members", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [m["customer_id"] for m in rest["members"]] == ["c4"] and rest["next_cursor"] is None

    # Membership follows the profile.
    api.post("/v1/customers", json={"id": "c1", "attributes": {"city": "Hà Nội"}})
    assert api.get("/v1/segments/hanoi").json()["size"] == 4
    profile = api.get("/v1/customers/c1").json()
    assert profile["segments"] == ["hanoi", "lifecycle:new_lead"]
    assert profile["lifecycle_stage"] == "new_lead"

    changed = api.put("/v1/segments/hanoi", json={"condition": {"not": HANOI}})
    assert changed.status_code == 200 and changed.json()["size"] == 1
    moves = api.get("/v1/segments/hanoi/movements", params={"limit": 5}).json()
    # The change: c3 entered, the four in Hà Nội left (newest first).
    assert [m["customer_id"] for m in moves if m["entered"]] == ["c3"]
    assert {m["customer_id"] for m in moves if not m["entered"]} == {"c0", "c1", "c2", "c4"}
    assert api.delete("/v1/segments/hanoi").status_code == 204
    assert api.get("/v1/segments/hanoi").status_code == 404
    assert api.get("/v1/segments/hanoi/members").status_code == 404
    assert api.delete("/v1/segments/hanoi").status_code == 404


def test_a_bad_condition_is_a_422_naming_the_node(api: TestClient) -> None:
    bad = {"all": [HANOI, {"event": "order_placed", "count": {"gte": "two"}}]}
    answer = api.post("/v1/segments", json={"name": "x", "condition": bad})
    assert answer.status_code == 422
    assert "condition.all[1].count.gte" in answer.text
    assert api.post("/v1/segments", json={"name": "Bad Name", "condition": HANOI}).status_code == 422
    unknown = api.post("/v1/segments", json={"name": "y", "condition": {"segment": "nope"}})
    assert unknown.status_code == 422 and "nope" in unknown.text


def test_declared_segments_are_read_only(api: TestClient) -> None:
    answer = api.put("/v1/segments/lifecycle:lapsed", json={"condition": HANOI})
    assert answer.status_code == 409 and "built in" in answer.text
    assert api.delete("/v1/segments/lifecycle:lapsed").status_code == 409
    assert api.post("/v1/segments", json={"name": "lifecycle:lapsed", "condition": HANOI}).status_code == 422
    assert api.get("/v1/segments/lifecycle:lapsed").json()["source"] == "builtin"
