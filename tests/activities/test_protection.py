"""Customer protection in deliver_step, through real journey runs: consent, suppression, frequency caps,
quiet hours, and one send per step even when attempts race."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from touchflow.activities.types import SendStepInput
from touchflow.models import CustomerIn, DeliveryStatus, EventIn
from touchflow.testing import JourneyHarness, SmtpInbox


def customer(journeys: JourneyHarness, id: str, **fields: Any) -> None:
    journeys.store.customers.upsert(CustomerIn(id=id, email=f"{id}@example.com", **fields))


async def probe(journeys: JourneyHarness, customer_id: str, probe_id: str, **props: Any) -> None:
    handle = await journeys.post(customer_id, "probe", {"probe_id": probe_id, "via": ["email"], **props})
    assert (await journeys.outcome(handle)).status == "completed"


def probe_step(journeys: JourneyHarness, customer_id: str, probe_id: str, **fields: Any) -> SendStepInput:
    """The probe's email step for a stored `probe` event, as a run would hand it to `deliver_step`."""
    event_id = f"{customer_id}-1"
    event = EventIn(id=event_id, customer_id=customer_id, name="probe", properties={"probe_id": probe_id})
    journeys.store.events.ingest([event], set())
    return SendStepInput(
        journey="probe",
        step="probe",
        workflow_id=f"probe:{customer_id}:{probe_id}",
        customer_id=customer_id,
        key=f"probe:{customer_id}:{probe_id}:1:probe",
        channels=["email"],
        stage="awareness",
        event_id=event_id,
        **fields,
    )


def deliveries(journeys: JourneyHarness, customer_id: str) -> list[tuple[str, str | None]]:
    return [(d.status, d.error) for d in reversed(journeys.store.deliveries.of_customer(customer_id))]


async def test_marketing_opt_out_skips_but_a_receipt_still_goes(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    customer(journeys, "opted-out", consents={"marketing": False})
    await probe(journeys, "opted-out", "promo")
    await probe(journeys, "opted-out", "receipt", transactional=True)
    assert [m["Subject"] for m in smtp.messages] == ["Probe receipt"]
    [(promo, why), (receipt, _)] = deliveries(journeys, "opted-out")
    assert promo == DeliveryStatus.SKIPPED and "marketing is false" in (why or "")
    assert receipt == DeliveryStatus.SENT


async def test_a_global_opt_out_stops_even_transactional(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    customer(journeys, "gone-quiet", consents={"all": False})
    await probe(journeys, "gone-quiet", "receipt", transactional=True)
    assert smtp.messages == []
    [(status, why)] = deliveries(journeys, "gone-quiet")
    assert status == DeliveryStatus.SKIPPED and "all messages" in (why or "")


async def test_a_channel_opt_out_falls_back_to_the_next_channel(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    customer(journeys, "no-mail", consents={"email.marketing": False})
    await probe(journeys, "no-mail", "x", via=["email", "console"])
    assert smtp.messages == []
    [delivery] = journeys.store.deliveries.of_customer("no-mail")
    assert (delivery.status, delivery.channel) == (DeliveryStatus.SENT, "console")
    assert [a["outcome"] for a in delivery.attempts] == ["no_consent", "sent"]


async def test_a_hard_bounce_suppresses_the_address_for_good(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    customer(journeys, "bounced")
    journeys.store.segments.create("emailable", "", {"reachable": "email"})
    assert journeys.store.segments.member_ids("emailable", None, 10) == ["bounced"]
    smtp.refuse = ["550 5.1.1 <bounced@example.com>: mailbox unavailable"]
    await probe(journeys, "bounced", "first")
    assert journeys.store.segments.member_ids("emailable", None, 10) == []  # unreachable from the bounce on
    await probe(journeys, "bounced", "second", transactional=True)  # nothing bypasses a suppression
    assert smtp.messages == []
    first, second = reversed(journeys.store.deliveries.of_customer("bounced"))
    assert first.status == DeliveryStatus.FAILED and "bounced@example.com" not in (first.error or "")
    assert second.status == DeliveryStatus.SKIPPED and "no usable email" in (second.error or "")
    assert journeys.store.deliveries.is_suppressed("email", "Bounced@Example.com")


@pytest.mark.parametrize("journey_settings", [{"frequency_caps": "2/1d, console=1/1d"}])
async def test_frequency_caps_count_marketing_only(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    customer(journeys, "busy")
    for n in range(3):
        await probe(journeys, "busy", f"m{n}")
    await probe(journeys, "busy", "receipt", transactional=True)
    assert [m["Subject"] for m in smtp.messages] == ["Probe m0", "Probe m1", "Probe receipt"]
    statuses = [s for s, _ in deliveries(journeys, "busy")]
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.CAPPED, DeliveryStatus.SENT]

    customer(journeys, "console-fan")
    await probe(journeys, "console-fan", "c1", via=["console", "email"])
    await probe(journeys, "console-fan", "c2", via=["console", "email"])  # console capped: email instead
    channels = [d.channel for d in reversed(journeys.store.deliveries.of_customer("console-fan"))]
    assert channels == ["console", "email"]


# Quiet hours around the time the tests run (crossing midnight when need be), so the minute of the day the
# suite happens to run in cannot fall outside them.
_QUIET_END = datetime.now(UTC) + timedelta(hours=2)
_QUIET = f"{datetime.now(UTC) - timedelta(hours=2):%H:%M}-{_QUIET_END:%H:%M}"


@pytest.mark.parametrize("journey_settings", [{"quiet_hours": _QUIET, "default_timezone": "UTC"}])
async def test_quiet_hours_defer_marketing_until_they_end(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    customer(journeys, "night-owl", timezone="UTC")
    handle = await journeys.post("night-owl", "probe", {"probe_id": "late", "via": ["email"]})
    state = await journeys.state_when(handle, lambda s: s.detail.startswith("waiting"))
    [delivery] = journeys.store.deliveries.of_customer("night-owl")
    assert delivery.status == DeliveryStatus.DEFERRED and delivery.retry_at is not None
    assert (delivery.retry_at.hour, delivery.retry_at.minute) == (_QUIET_END.hour, _QUIET_END.minute)
    assert "until" in state.detail and smtp.messages == []

    assert (await journeys.outcome(handle)).status == "completed"  # the journey slept through
    [mail] = smtp.messages
    assert mail["Subject"] == "Probe late"
    [delivery] = journeys.store.deliveries.of_customer("night-owl")
    assert delivery.status == DeliveryStatus.SENT


@pytest.mark.parametrize("journey_settings", [{"quiet_hours": _QUIET, "default_timezone": "UTC"}])
async def test_a_local_attempt_reads_quiet_hours_on_the_clock_of_now_not_of_its_first_ask(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    """A local activity is scheduled once for all its retries: one retried into quiet hours defers there."""
    customer(journeys, "retried", timezone="UTC")
    first_asked = datetime.now(UTC) - timedelta(hours=6)  # outside the quiet hours around now
    step = probe_step(journeys, "retried", "q1", entered_at=first_asked, asked_at=first_asked)
    env = ActivityEnvironment()
    env.info = replace(env.info, is_local=True)
    result = await env.run(journeys.activities.deliver_step, step)
    assert result.status == "deferred" and result.retry_at is not None and smtp.messages == []
    assert (result.retry_at.hour, result.retry_at.minute) == (_QUIET_END.hour, _QUIET_END.minute)


async def test_two_racing_attempts_send_the_step_once(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    customer(journeys, "raced")
    step = probe_step(journeys, "raced", "r1", entered_at=datetime.now(UTC) - timedelta(seconds=1))
    activities = journeys.activities
    env = ActivityEnvironment()
    results = await asyncio.gather(
        env.run(activities.deliver_step, step), env.run(activities.deliver_step, step), return_exceptions=True
    )
    sent = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(smtp.messages) == 1
    assert len(sent) + len(refused) == 2 and len(sent) >= 1
    assert all("another attempt is sending" in str(r) for r in refused)
    again = await env.run(activities.deliver_step, step)  # a later retry answers from the record
    assert again.status == "sent" and len(smtp.messages) == 1
