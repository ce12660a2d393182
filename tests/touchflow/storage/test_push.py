"""Web push subscriptions on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.support.push_service import Subscriber
from touchflow.storage import Store


def test_push_results_track_successes_failures_and_gone_subscriptions(store: Store) -> None:
    one, two = (Subscriber(token=t, endpoint=f"https://push.example/{t}") for t in ("one", "two"))
    first, created = store.push.save("c1", one.subscription_in())
    second, _ = store.push.save("c1", two.subscription_in())
    assert created
    assert first.id is not None and second.id is not None

    store.push.record_result(first.id, ok=False)
    store.push.record_result(first.id, ok=False)
    store.push.record_result(second.id, ok=True)
    saved = {s.id: s for s in store.push.of_customer("c1")}
    assert (saved[first.id].failures, saved[first.id].last_success_at) == (2, None)
    assert saved[second.id].last_success_at is not None

    store.push.record_result(first.id, ok=True)
    assert {s.id: s.failures for s in store.push.of_customer("c1")} == {first.id: 0, second.id: 0}

    store.push.record_result(first.id, ok=False, gone=True)
    assert [s.id for s in store.push.of_customer("c1")] == [second.id]
    # Saving it again (the browser subscribed anew) starts it fresh.
    again, created = store.push.save("c1", one.subscription_in())
    assert created and again.failures == 0
