"""A slow provider is sent to once: the attempt heartbeats and renews its send lease while the provider takes
its time, and only the holder of the current lease records a result (a fencing token)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.support.harness import delivery_attempts
from touchflow.models import Delivery, DeliveryStatus
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox


@pytest.fixture
def journey_settings() -> dict[str, Any]:
    return {"delivery_attempt_timeout": "2s"}


async def test_an_smtp_server_answering_6s_after_the_data_gets_one_email(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    smtp.data_latency = 6.0  # three times the attempt timeout
    journeys.customer("s1", email="s1@example.com")
    handle = await journeys.post("s1", "probe", {"probe_id": "slow", "via": ["email"]})
    assert handle is not None
    assert (await journeys.outcome(handle)).status == "completed"
    assert [rcpt for _, [rcpt] in smtp.envelopes] == ["s1@example.com"]
    [delivery] = journeys.deliveries("s1")
    assert delivery.status == DeliveryStatus.SENT
    assert delivery_attempts(await handle.fetch_history()) == [1]


def test_only_the_current_lease_holder_records_the_result(sqlite_store: Store) -> None:
    claimed = sqlite_store.deliveries.claim(
        Delivery(key="k1", journey="j", step="s", customer_id="c", workflow_id="j:c")
    )
    assert claimed.id is not None
    first, _ = sqlite_store.deliveries.start_sending(
        claimed.id, timedelta(seconds=0)
    )  # expires at once: presumed dead
    second, interrupted = sqlite_store.deliveries.start_sending(claimed.id, timedelta(minutes=1))
    assert first is not None and second is not None and second != first and interrupted
    assert not sqlite_store.deliveries.renew_lease(claimed.id, first, timedelta(minutes=1))
    assert (
        sqlite_store.deliveries.finish_sending(claimed.id, first, status=DeliveryStatus.FAILED, error="late")
        is None
    )
    done = sqlite_store.deliveries.finish_sending(
        claimed.id, second, status=DeliveryStatus.SENT, channel="email"
    )
    assert done is not None and (done.status, done.error, done.sending_until) == (
        DeliveryStatus.SENT,
        None,
        None,
    )
