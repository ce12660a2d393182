"""Fault injection: the engine under a refusing mail server and duplicate, concurrent clients.

The process-killing faults (worker SIGKILL, API killed before relaying) are in test_crashes.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
from sqlmodel import Session

from tests.conftest import API_KEY
from tests.support.server import serving
from touchflow.api.main import create_app
from touchflow.models import CustomerIn, DeliveryStatus, OutboxEntry, utcnow
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox


async def test_smtp_refusing_451_for_a_while_then_every_message_arrives_once(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    customers = [f"r{i}" for i in range(5)]
    for customer in customers:
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
    smtp.refuse = ["451 4.3.2 System not accepting network messages"] * 12
    handles = [await journeys.post(c, "probe", {"probe_id": c, "via": ["email"]}) for c in customers]
    for handle in handles:
        assert (await journeys.outcome(handle)).status == "completed"

    assert smtp.refuse == []  # every refusal was given, then the server accepted
    assert Counter(rcpt for _, [rcpt] in smtp.envelopes) == {f"{c}@example.com": 1 for c in customers}
    for customer in customers:
        [delivery] = journeys.store.deliveries.of_customer(customer)
        assert delivery.status == DeliveryStatus.SENT
    retried = [a for c in customers for a in journeys.store.deliveries.of_customer(c)[0].attempts]
    assert sum(a["outcome"] == "retryable" for a in retried) == 12
    assert all("451" in a["reason"] for a in retried if a["outcome"] == "retryable")


async def test_the_same_500_events_from_two_clients_at_once_start_each_journey_once(
    journeys: JourneyHarness, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    customers = [f"d{i:03d}" for i in range(500)]
    for customer in customers:
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
    events = [{"id": f"signup-{c}", "customer_id": c, "name": "signed_up"} for c in customers]
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]

    app = create_app(make_settings(database_url=str(journeys.store.engine.url)), run_relay=False)
    app.state.relay = journeys.relay
    async with serving(app) as url:

        async def client(order: list[list[dict[str, str]]]) -> Counter[str]:
            seen: Counter[str] = Counter()
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
                for batch in order:
                    answer = (await http.post("/v1/events/batch", json={"events": batch})).json()
                    seen.update(r["status"] for r in answer["results"])
            return seen

        first, second = await asyncio.gather(client(batches), client(batches[::-1]))

    # Between them the two clients got every event accepted exactly once.
    assert first["accepted"] + second["accepted"] == 500
    assert first["duplicate"] + second["duplicate"] == 500
    while await journeys.relay.relay_once():
        pass
    await smtp.wait_for(500, timeout=120)
    assert Counter(rcpt for _, [rcpt] in smtp.envelopes) == {f"{c}@example.com": 1 for c in customers}
    for customer in customers[::50]:
        handle = journeys.env.client.get_workflow_handle(f"welcome:{customer}")
        state = await journeys.state_when(handle, lambda s: len(s.sent) == 2)
        assert state.sent == ["welcome", "welcome_inbox"]


def requeue(store: Store, event_id: str) -> None:
    """What a relay leaves behind when it dies between handing an event to Temporal and deleting its entry:
    the entry, leased again once its lease lapses."""
    event = store.events.get(event_id)
    assert event is not None
    with Session(store.engine) as session:
        session.add(
            OutboxEntry(event_id=event_id, customer_id=event.customer_id, attempts=1, available_at=utcnow())
        )
        session.commit()


async def test_a_relay_retry_of_a_start_event_after_its_run_closed_starts_nothing(
    journeys: JourneyHarness,
) -> None:
    """`probe` may run again once its run has ended (`Reentry.ONE_AT_A_TIME`), but not on the same event."""
    journeys.customer("p1", email="p1@example.com")
    handle = await journeys.post("p1", "probe", {"probe_id": "x", "via": ["console"]}, event_id="probe-x")
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "completed"
    first_run = (await handle.describe()).run_id

    requeue(journeys.store, "probe-x")
    while await journeys.relay.relay_once():
        pass

    assert journeys.store.outbox.size() == 0
    assert (await handle.describe()).run_id == first_run
    assert [d.step for d in journeys.deliveries("p1")] == ["probe"]
    # a new event of the same entry is a new run, as the journey allows
    again = await journeys.post("p1", "probe", {"probe_id": "x", "via": ["console"]}, event_id="probe-x2")
    assert again is not None
    assert (await journeys.outcome(again)).status == "completed"
    assert [d.step for d in journeys.deliveries("p1")] == ["probe", "probe"]
