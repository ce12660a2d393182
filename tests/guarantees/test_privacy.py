"""Personal data stays in touchflow's store: not in Temporal's history or search attributes, not in logs."""

from __future__ import annotations

import logging

import pytest

from touchflow.models import CustomerIn
from touchflow.testing import JourneyHarness, SmtpInbox
from touchflow.workflows.base import CUSTOMER_ID

EMAIL, PHONE, NAME = "lan.nguyen@example.com", "+84912345678", "Nguyễn Thị Lan"


async def test_histories_hold_ids_not_profiles(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    journeys.store.customers.upsert(
        CustomerIn(id="c-lan", email=EMAIL, phone=PHONE, locale="vi", attributes={"first_name": NAME})
    )
    welcome = await journeys.post("c-lan", "signed_up")
    cart = await journeys.post(
        "c-lan",
        "cart_updated",
        {"cart_id": "k1", "items": [{"name": "Nón lá", "price": 120000}], "total": 120000},
    )
    await smtp.wait_for(1)
    await journeys.state_when(welcome, lambda s: len(s.sent) == 2)
    for handle in (welcome, cart):
        history = (await handle.fetch_history()).to_json()
        for secret in (EMAIL, PHONE, NAME, "lan.nguyen"):
            assert secret not in history, f"{secret!r} is in the history of {handle.id}"
        described = await handle.describe()
        names = {pair.key.name for pair in described.typed_search_attributes}
        # TemporalChangeVersion: the SDK's record of the code changes a run went through (`workflow.patched`).
        assert names <= {"CustomerId", "JourneyStage", "TemporalChangeVersion"}
        assert described.typed_search_attributes.get(CUSTOMER_ID) == "c-lan"


async def test_logs_never_carry_addresses(
    journeys: JourneyHarness, smtp: SmtpInbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    journeys.store.customers.upsert(CustomerIn(id="c-x", email=EMAIL, phone=PHONE))
    smtp.refuse = [f"550 5.1.1 <{EMAIL}>: no such user"]
    handle = await journeys.post("c-x", "probe", {"probe_id": "p", "via": ["email"]})
    await journeys.outcome(handle)
    # Everything logged on our side (the loopback mail server's own log is the provider's, not ours).
    ours = [r for r in caplog.records if r.name != "mail.log"]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "step delivered" in logged
    assert EMAIL not in logged and PHONE not in logged
    [delivery] = journeys.store.deliveries.of_customer("c-x")
    assert EMAIL not in (delivery.error or "") and EMAIL not in str(delivery.attempts)
