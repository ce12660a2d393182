"""Journey entries on SQLite and PostgreSQL."""

from __future__ import annotations

from touchflow.models import JourneyStatus
from touchflow.storage import Store


def test_entering_a_journey_is_idempotent_per_run_and_sees_earlier_runs(store: Store) -> None:
    entry, earlier = store.journeys.enter(
        run_id="r1", workflow_id="welcome:c", journey="welcome", customer_id="c", entry_key=None
    )
    same, _ = store.journeys.enter(
        run_id="r1", workflow_id="welcome:c", journey="welcome", customer_id="c", entry_key=None
    )
    assert earlier == [] and same.id == entry.id
    store.journeys.leave("r1", JourneyStatus.CONVERTED, "order_placed")
    _, earlier = store.journeys.enter(
        run_id="r2", workflow_id="welcome:c", journey="welcome", customer_id="c", entry_key=None
    )
    assert [(e.run_id, e.status, e.ended_by) for e in earlier] == [
        ("r1", JourneyStatus.CONVERTED, "order_placed")
    ]
    assert [e.run_id for e in store.journeys.active_entries("welcome", "c")] == ["r2"]
