"""The worker's delivery metrics, counted by the real deliver_step of a journey run."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from touchflow.testing import JourneyHarness, SmtpInbox


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_sent_step_counts_its_delivery_send_latency_and_event_to_send(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.customer("m-1", email="m1@example.com")
    handle = await journeys.post("m-1", "signed_up")
    await journeys.state_when(handle, lambda s: s.sent == ["welcome", "welcome_inbox"])

    registry = journeys.activities.metrics.registry
    delivered = "touchflow_deliveries_total"
    email = {"journey": "welcome", "step": "welcome", "channel": "email", "outcome": "sent"}
    assert sample(registry, delivered, **email) == 1
    onsite = {"journey": "welcome", "step": "welcome_inbox", "channel": "onsite", "outcome": "sent"}
    assert sample(registry, delivered, **onsite) == 1
    assert sample(registry, "touchflow_send_duration_seconds_count", channel="email", result="ok") == 1
    # Both steps answer the signup: from the event received to the message sent, a moment.
    assert sample(registry, "touchflow_event_to_send_seconds_count", journey="welcome", step="welcome") == 1
    assert sample(registry, "touchflow_event_to_send_seconds_sum", journey="welcome", step="welcome") < 30
