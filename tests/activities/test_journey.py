"""deliver_step through a real journey run: fallback, idempotency, the guard."""

from __future__ import annotations

from touchflow.models import CustomerIn, DeliveryStatus
from touchflow.testing import JourneyHarness, SmtpInbox


async def test_probe_falls_back_to_the_next_channel(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.store.upsert_customer(CustomerIn(id="p1", email="p1@example.com", attributes={"name": "Bi"}))
    handle = await journeys.post("p1", "probe", {"probe_id": "x1", "via": ["zalo_zns", "email"]})
    outcome = await journeys.outcome(handle)
    assert outcome.status == "completed"
    [mail] = smtp.messages
    assert mail["Subject"] == "Probe x1"
    [delivery] = journeys.store.customer_deliveries("p1")
    assert delivery.channel == "email"
    assert delivery.status == DeliveryStatus.SENT
