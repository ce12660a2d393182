"""The API's data shapes against the tables that hold them."""

from __future__ import annotations

from sqlmodel import SQLModel

from touchflow.models import ENTRY_KEY_MAX_LENGTH, WORKFLOW_ID_MAX_LENGTH, CustomerIn, EventIn


def length(table: str, column: str) -> int:
    size = getattr(SQLModel.metadata.tables[table].c[column].type, "length", None)
    assert isinstance(size, int), f"{table}.{column} is unbounded"
    return size


def test_ids_names_and_entry_keys_are_bounded_as_the_columns_that_hold_them() -> None:
    event = EventIn.model_json_schema()["properties"]
    assert event["id"]["maxLength"] == length("events", "id") == length("outbox", "event_id")
    customer_columns = {
        length(t, "customer_id") for t in ("events", "journey_entries", "deliveries", "coupons")
    }
    assert {event["customer_id"]["maxLength"]} == customer_columns == {length("customers", "id")}
    assert CustomerIn.model_json_schema()["properties"]["id"]["maxLength"] == length("customers", "id")
    assert event["name"]["maxLength"] == length("events", "name")
    assert ENTRY_KEY_MAX_LENGTH == length("journey_entries", "entry_key") == length("coupons", "entry_key")
    assert (
        WORKFLOW_ID_MAX_LENGTH
        == length("journey_entries", "workflow_id")
        == length("deliveries", "workflow_id")
    )
