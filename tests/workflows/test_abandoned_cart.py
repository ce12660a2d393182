"""The abandoned-cart journey on the time-skipping server: reminders, restarts, exits, ordering, re-entry."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.service import RPCError

from touchflow.models import CustomerIn, DeliveryStatus, utcnow
from touchflow.testing import JourneyHarness, SmtpInbox
from touchflow.workflows.base import sticky_variant


def cart(cart_id: str, *items: tuple[str, int, int]) -> dict[str, Any]:
    return {
        "cart_id": cart_id,
        "items": [
            {
                "name": n,
                "price": p,
                "quantity": q,
                "image": f"https://shop.example/{n}.png",
                "url": "https://x",
            }
            for n, p, q in items
        ],
        "total": sum(p * q for _, p, q in items),
        "currency": "VND",
        "cart_url": f"https://shop.example/cart/{cart_id}",
    }


def customer(journeys: JourneyHarness, locale: str = "vi") -> str:
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    journeys.store.customers.upsert(
        CustomerIn(id=customer_id, email=f"{customer_id}@example.com", locale=locale)
    )
    return customer_id


def cart_deliveries(journeys: JourneyHarness, customer_id: str) -> dict[str, list[DeliveryStatus]]:
    found: dict[str, list[DeliveryStatus]] = {}
    for d in sorted(journeys.store.deliveries.of_customer(customer_id), key=lambda d: d.id or 0):
        if d.journey == "abandoned_cart":
            found.setdefault(d.step, []).append(d.status)
    return found


async def test_two_reminders_show_the_newest_cart(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    c = customer(journeys)
    handle = await journeys.post(c, "cart_updated", cart("k1", ("Áo thun", 250_000, 1)))
    assert handle is not None and handle.id == f"abandoned_cart:{c}:k1"
    # A newer cart_updated of the same cart restarts the wait; the reminders show its contents.
    await journeys.post(c, "cart_updated", cart("k1", ("Áo thun", 250_000, 2), ("Mũ", 750_000, 1)))

    assert (await journeys.outcome(handle)).status == "completed"
    first, second = smtp.messages
    variant = sticky_variant(c, "cart_reminder_copy", ("a", "b"))
    expected = {"a": "Bạn còn sản phẩm trong giỏ hàng", "b": "Giỏ hàng của bạn sắp hết hàng"}[variant]
    assert first["Subject"] == expected
    assert second["Subject"] == "Bạn vẫn đang cân nhắc?"
    body = second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Mũ \u00d7 1: 750.000\xa0₫" in body
    assert "Tổng cộng: 1.250.000\xa0₫" in body
    assert cart_deliveries(journeys, c) == {
        "cart_reminder_1": [DeliveryStatus.SENT],
        "cart_reminder_2": [DeliveryStatus.SENT],
    }
    [reminder] = [d for d in journeys.store.deliveries.of_customer(c) if d.step == "cart_reminder_1"]
    assert reminder.variant == variant
    assert reminder.channel == "email"  # web_push is not configured here: fell back


async def test_an_order_for_the_cart_converts_it_before_any_reminder(journeys: JourneyHarness) -> None:
    c = customer(journeys)
    handle = await journeys.post(c, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    assert handle is not None
    await journeys.post(c, "order_placed", {"order_id": "o-1", "cart_id": "k1", "total": 750_000})
    outcome = await journeys.outcome(handle)
    assert (outcome.status, outcome.ended_by) == ("converted", "order_placed")
    assert cart_deliveries(journeys, c) == {}


async def test_clearing_the_cart_exits_it(journeys: JourneyHarness) -> None:
    c = customer(journeys)
    handle = await journeys.post(c, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    assert handle is not None
    await journeys.post(c, "cart_cleared", {"cart_id": "k1"})
    outcome = await journeys.outcome(handle)
    assert (outcome.status, outcome.ended_by) == ("exited", "cart_cleared")
    assert cart_deliveries(journeys, c) == {}


async def test_an_order_for_another_cart_leaves_this_one_running(journeys: JourneyHarness) -> None:
    c = customer(journeys)
    handle = await journeys.post(c, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    assert handle is not None
    await journeys.post(c, "order_placed", {"order_id": "o-9", "cart_id": "other"})
    assert (await journeys.outcome(handle)).status == "completed"
    assert cart_deliveries(journeys, c)["cart_reminder_1"] == [DeliveryStatus.SENT]


async def test_order_stored_before_a_late_cart_event_means_no_reminder(journeys: JourneyHarness) -> None:
    """Out of order: the order reaches us first, the (earlier) cart_updated afterwards."""
    c = customer(journeys)
    await journeys.post(c, "order_placed", {"order_id": "o-1", "cart_id": "k1"})
    handle = await journeys.post(
        c, "cart_updated", cart("k1", ("Mũ", 750_000, 1)), timestamp=utcnow() - timedelta(minutes=10)
    )
    assert handle is not None
    outcome = await journeys.outcome(handle)
    assert (outcome.status, outcome.ended_by) == ("converted", "order_placed")
    assert cart_deliveries(journeys, c) == {"cart_reminder_1": [DeliveryStatus.SKIPPED]}


async def test_a_repeated_event_sends_one_message(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    c = customer(journeys)
    contents = cart("k1", ("Mũ", 750_000, 1))
    handle = await journeys.post(c, "cart_updated", contents, event_id=f"e-{c}")
    await journeys.post(c, "cart_updated", contents, event_id=f"e-{c}")
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "completed"
    assert cart_deliveries(journeys, c) == {
        "cart_reminder_1": [DeliveryStatus.SENT],
        "cart_reminder_2": [DeliveryStatus.SENT],
    }
    assert len(smtp.messages) == 2


async def test_one_run_per_cart_and_never_again_for_the_same_cart(journeys: JourneyHarness) -> None:
    c = customer(journeys)
    k1 = await journeys.post(c, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    k2 = await journeys.post(c, "cart_updated", cart("k2", ("Áo", 250_000, 1)))
    assert k1 is not None and k2 is not None and k1.id != k2.id
    await journeys.post(c, "cart_cleared", {"cart_id": "k1"})
    assert (await journeys.outcome(k1)).status == "exited"
    first_run = (await k1.describe()).run_id

    # The same cart again: the run is not started anew (Temporal rejects the id), and the relay is done.
    again = await journeys.post(c, "cart_updated", cart("k1", ("Mũ", 750_000, 3)))
    assert again is not None
    assert (await again.describe()).run_id == first_run
    assert journeys.store.outbox.size() == 0
    assert (await journeys.outcome(k2)).status == "completed"


async def test_the_split_is_sticky_across_entries(journeys: JourneyHarness) -> None:
    c = customer(journeys, locale="en")
    for cart_id in ("k1", "k2"):
        handle = await journeys.post(c, "cart_updated", cart(cart_id, ("Cap", 10, 1)))
        assert handle is not None
        await journeys.outcome(handle)
        state = await journeys.state(handle)
        assert state.variants == {"cart_reminder_copy": sticky_variant(c, "cart_reminder_copy", ("a", "b"))}
    variants = {d.variant for d in journeys.store.deliveries.of_customer(c) if d.step == "cart_reminder_1"}
    assert len(variants) == 1


async def test_a_cart_filled_anonymously_carries_on_as_the_customer_after_login(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    """The visitor's run keeps its workflow id; the known customer's events feed it and end it."""
    visitor = f"anon:{uuid.uuid4().hex}"
    handle = await journeys.post(visitor, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    assert handle is not None
    await journeys.state_when(handle, lambda s: "waiting" in s.detail)
    journeys.customer("u-merged", email="merged@example.com")
    journeys.store.identities.merge(visitor, "u-merged")

    # After login the same cart changes: the visitor's run gets it, no second run starts.
    assert await journeys.post("u-merged", "cart_updated", cart("k1", ("Mũ", 750_000, 2))) is not None
    started = journeys.handle("abandoned_cart", "u-merged", "k1")
    with pytest.raises(RPCError):
        await started.describe()
    history = await handle.fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 2
    # The customer's order for that cart ends the run the visitor began.
    await journeys.post("u-merged", "order_placed", {"order_id": "o-9", "cart_id": "k1", "total": 1_500_000})
    outcome = await journeys.outcome(handle)
    assert (outcome.status, outcome.ended_by) == ("converted", "order_placed")
    assert smtp.messages == []


async def test_a_visitors_run_not_entered_yet_is_fed_after_login_not_doubled(
    journeys: JourneyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker is slow: the visitor's run has no journey entry yet when the customer's event comes."""
    gate = threading.Event()
    enter = journeys.store.journeys.enter

    def slow_enter(**entry: Any) -> Any:
        gate.wait(10)
        return enter(**entry)

    monkeypatch.setattr(journeys.activities.store.journeys, "enter", slow_enter)
    visitor = f"anon:{uuid.uuid4().hex}"
    handle = await journeys.post(visitor, "cart_updated", cart("k1", ("Mũ", 750_000, 1)))
    assert handle is not None
    journeys.customer("u-slow", email="slow@example.com")
    journeys.store.identities.merge(visitor, "u-slow")

    assert await journeys.post("u-slow", "cart_updated", cart("k1", ("Mũ", 750_000, 2))) is not None
    gate.set()
    with pytest.raises(RPCError):
        await journeys.handle("abandoned_cart", "u-slow", "k1").describe()
    await journeys.state_when(handle, lambda s: "waiting" in s.detail)
    history = await handle.fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 2


async def test_a_cart_journey_the_visitor_went_through_does_not_run_again_after_login(
    journeys: JourneyHarness,
) -> None:
    """abandoned_cart runs once per cart: the visitor's converted run was that once."""
    visitor = f"anon:{uuid.uuid4().hex}"
    handle = await journeys.post(visitor, "cart_updated", cart("k2", ("Mũ", 750_000, 1)))
    assert handle is not None
    await journeys.state_when(handle, lambda s: "waiting" in s.detail)
    await journeys.post(visitor, "order_placed", {"order_id": "o-1", "cart_id": "k2", "total": 750_000})
    assert (await journeys.outcome(handle)).status == "converted"
    journeys.customer("u-done", email="done@example.com")
    journeys.store.identities.merge(visitor, "u-done")

    assert await journeys.post("u-done", "cart_updated", cart("k2", ("Mũ", 750_000, 2))) is not None
    with pytest.raises(RPCError):
        await journeys.handle("abandoned_cart", "u-done", "k2").describe()
