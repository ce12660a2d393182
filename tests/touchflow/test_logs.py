"""TOUCHFLOW_LOG_FORMAT=json: one JSON object a line, with workflow and event ids where known, never PII."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from touchflow.logs import JsonFormatter, log_context
from touchflow.testing import JourneyHarness, SmtpInbox

EMAIL = "lan.nguyen+vip@example.com"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the process's JSON handler writes, for the length of the test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_carries_the_context_ids_the_extras_and_no_email_address(json_log: io.StringIO) -> None:
    log = logging.getLogger("touchflow.test")
    with log_context(event_id="evt_1", workflow_id="welcome:c1"):
        log.warning("bounced for %s", EMAIL, extra={"channel": "email", "to": EMAIL})
    log.info("outside")
    inside, outside = lines(json_log)
    assert inside["event_id"] == "evt_1" and inside["workflow_id"] == "welcome:c1"
    assert inside["level"] == "WARNING" and inside["channel"] == "email"
    assert inside["message"] == "bounced for [email]" and inside["to"] == "[email]"
    assert "event_id" not in outside
    assert EMAIL not in json_log.getvalue()


async def test_a_journey_run_logs_json_with_its_ids_and_never_the_customers_address(
    journeys: JourneyHarness, smtp: SmtpInbox, json_log: io.StringIO
) -> None:
    journeys.customer("log-1", email=EMAIL, attributes={"first_name": "Lan"})
    handle = await journeys.post("log-1", "signed_up", {"email": EMAIL}, event_id="evt-log-1")
    await journeys.state_when(handle, lambda s: s.sent == ["welcome", "welcome_inbox"])
    assert smtp.envelopes[0][1] == [EMAIL]  # the address was used, where it belongs

    found = lines(json_log)
    delivered = [line for line in found if line["message"] == "step delivered"]
    assert {line["step"] for line in delivered} == {"welcome", "welcome_inbox"}
    for line in delivered:
        assert line["workflow_id"] == "welcome:log-1" and line["event_id"] == "evt-log-1"
        assert line["activity"] == "deliver_step"
    assert EMAIL not in json_log.getvalue()
