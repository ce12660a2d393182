"""A slow provider is sent to once: the attempt renews its send lease while the provider takes its time (a
local activity, its workflow task kept open by the SDK), and only the holder of the current lease records a
result (a fencing token)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from tests.support.harness import delivery_attempts
from touchflow.models import Delivery, DeliveryStatus
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox, eventually


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


async def test_a_run_cancelled_mid_send_stops_and_its_send_is_recorded_once(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    smtp.data_latency = 3.0
    journeys.customer("s2", email="s2@example.com")
    handle = await journeys.post("s2", "probe", {"probe_id": "cancelled", "via": ["email"]})
    assert handle is not None
    await eventually(lambda: smtp.envelopes != [], what="the provider to have the message")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await journeys.outcome(handle)
    assert isinstance(failed.value.cause, CancelledError)  # the run stopped; it did not go on as if failed
    # The attempt in flight finishes and records its result: nothing would send the step again.
    await eventually(
        lambda: [d.status for d in journeys.deliveries("s2")] == [DeliveryStatus.SENT],
        what="the interrupted send to be recorded",
    )
    assert [rcpt for _, [rcpt] in smtp.envelopes] == ["s2@example.com"]


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
