"""The welcome journey on Temporal's time-skipping test server, with real activities, store and SMTP."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHandle

from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.testing import JourneyHarness, SmtpInbox


async def test_welcome_email_at_once_in_the_customers_language(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.store.customers.upsert(
        CustomerIn(id="c-vi", email="an@example.com", locale="vi-VN", attributes={"first_name": "An"})
    )
    handle = await journeys.post("c-vi", "signed_up")

    [mail] = await smtp.wait_for(1)
    assert mail["To"] == "an@example.com"
    assert mail["Subject"] == "Chào mừng bạn đến với touchflow, An!"
    assert handle.id == "welcome:c-vi"
    state = await journeys.state_when(handle, lambda s: len(s.sent) == 2)
    assert state.sent == ["welcome", "welcome_inbox"]
    assert state.stage == "awareness"


async def test_nudge_after_the_delay_unless_an_order_came(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    for customer in ("buyer", "browser"):
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
    buyer = await journeys.post("buyer", "signed_up")
    browser = await journeys.post("browser", "signed_up")
    await smtp.wait_for(2)
    await journeys.post("buyer", "order_placed", {"order_id": "o-1"})

    # Waiting on a result lets the test server skip the two days.
    assert (await journeys.outcome(browser)).status == "completed"
    assert (await journeys.outcome(buyer)).status == "converted"
    # (The order also starts the post-purchase journey: its confirmation is not the welcome series' mail.)
    subjects = sorted(str(m["Subject"]) for m in smtp.messages if not str(m["Subject"]).startswith("Order"))
    assert subjects == ["Welcome to touchflow!", "Welcome to touchflow!", "Your first order is waiting"]
    nudged = [d for d in journeys.store.deliveries.of_customer("browser") if d.step == "first_purchase_nudge"]
    assert [d.status for d in nudged] == [DeliveryStatus.SENT]


async def test_a_second_signup_does_not_restart_the_series(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.store.customers.upsert(CustomerIn(id="twice", email="twice@example.com"))
    first: WorkflowHandle = await journeys.post("twice", "signed_up")
    await journeys.state_when(first, lambda s: s.sent == ["welcome", "welcome_inbox"])
    await journeys.post("twice", "signed_up", event_id=f"again-{uuid.uuid4().hex}")
    state = await journeys.state_when(first, lambda s: "waiting" in s.detail)
    assert state.sent == ["welcome", "welcome_inbox"]
    assert len(smtp.messages) == 1


async def test_welcome_inbox_message_goes_beside_the_email(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    """The onsite step is part of the series: same stage, its own delivery, into the customer's inbox."""
    journeys.store.customers.upsert(CustomerIn(id="inbox", email="inbox@example.com"))
    handle = await journeys.post("inbox", "signed_up")
    await journeys.state_when(handle, lambda s: " UTC" in s.detail)  # in the wait after both steps
    steps = {d.step: d for d in journeys.store.deliveries.of_customer("inbox")}
    assert steps["welcome"].status == DeliveryStatus.SENT
    assert steps["welcome_inbox"].stage == "awareness"
    assert (steps["welcome_inbox"].status, steps["welcome_inbox"].channel) == (DeliveryStatus.SENT, "onsite")


async def test_welcome_runs_once_ever_even_when_temporal_forgot(journeys: JourneyHarness) -> None:
    """Re-entry ONCE: Temporal rejects the id while it remembers; the store's entry covers after retention."""
    journeys.store.customers.upsert(CustomerIn(id="forgot", email="forgot@example.com"))
    journeys.store.journeys.enter(
        run_id="run-before-retention",
        workflow_id="welcome:forgot",
        journey="welcome",
        customer_id="forgot",
        entry_key=None,
    )
    handle = await journeys.post("forgot", "signed_up")
    outcome = await journeys.outcome(handle)
    assert outcome.status == "not_admitted"
    assert journeys.store.deliveries.of_customer("forgot") == []
