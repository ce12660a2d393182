"""Broadcasts on the time-skipping test server: one workflow, batches of real deliveries, loopback SMTP."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import WorkflowHandle

from touchflow.api.main import create_app
from touchflow.channels import OutboundMessage, Receipt, RetryableDeliveryError
from touchflow.models import Broadcast, BroadcastStatus
from touchflow.testing import TEST_API_KEY, JourneyHarness, SmtpInbox, eventually, registry_of
from touchflow.workflows.broadcast import BroadcastOutcome, workflow_id
from touchflow.workflows.registry import Registry

SALE = {
    "email": {
        "en": {"subject": "Sale for {{ customer.first_name }}", "text": "20% off.", "html": "<p>20% off</p>"},
        "vi": {
            "subject": "Giảm giá cho {{ customer.first_name }}",
            "text": "Giảm 20%.",
            "html": "<p>Giảm 20%</p>",
        },
    }
}


@pytest.fixture
def journey_registry() -> Registry:
    return registry_of()


@pytest.fixture
def journey_settings() -> dict[str, Any]:
    return {"broadcast_batch_size": 5}


async def start(journeys: JourneyHarness, customer_ids: list[str], **fields: Any) -> WorkflowHandle[Any, Any]:
    broadcast = journeys.store.broadcasts.create(
        Broadcast(
            id=f"b-{uuid.uuid4().hex[:8]}",
            name="sale",
            audience={"customer_ids": customer_ids},
            via=["email"],
            content=fields.pop("content", SALE),
            **fields,
        )
    )
    router = await journeys.relay.router()
    await router.start_broadcast(broadcast.id, broadcast.send_at, timedelta(seconds=30))
    return journeys.env.client.get_workflow_handle(workflow_id(broadcast.id), result_type=BroadcastOutcome)


def broadcast_of(journeys: JourneyHarness, handle: WorkflowHandle[Any, Any]) -> Broadcast:
    found = journeys.store.broadcasts.get(handle.id.removeprefix("broadcast:"))
    assert found is not None
    return found


def customers(journeys: JourneyHarness, count: int, **profile: Any) -> list[str]:
    ids = [f"c{n:03}" for n in range(count)]
    for customer_id in ids:
        journeys.customer(customer_id, email=f"{customer_id}@example.com", **profile)
    return ids


async def test_each_recipient_gets_it_once_and_the_rest_are_skipped_by_reason(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    ids = customers(journeys, 12, attributes={"first_name": "An"})
    journeys.customer("c000", email="c000@example.com", locale="vi", attributes={"first_name": "An"})
    journeys.customer("c001", email="c001@example.com", consents={"email.marketing": False})
    journeys.store.deliveries.suppress("email", "c002@example.com", "bounced")
    handle = await start(journeys, [*ids, "nobody"])

    outcome = await journeys.outcome(handle)

    assert (outcome.status, outcome.total) == ("completed", 13)
    received = Counter(str(m["To"]) for m in smtp.messages)
    assert received == Counter(f"c{n:03}@example.com" for n in range(3, 12)) + Counter(["c000@example.com"])
    subjects = {str(m["To"]): str(m["Subject"]) for m in smtp.messages}
    assert subjects["c000@example.com"] == "Giảm giá cho An"
    assert subjects["c003@example.com"] == "Sale for An"
    counts = {
        (s, e): n for s, e, n in journeys.store.broadcasts.outcome_counts(broadcast_of(journeys, handle).id)
    }
    assert counts[("sent", None)] == 10
    assert counts[("skipped", "email: no consent: email.marketing is false")] == 1
    assert counts[("skipped", "customer no longer exists")] == 1
    assert counts[("skipped", "email: customer has no usable email")] == 1  # the suppressed address
    assert broadcast_of(journeys, handle).status == BroadcastStatus.COMPLETED


async def test_a_batch_retried_mid_way_sends_no_duplicate_and_leaves_no_gap(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    """The 8th send fails once (the provider hung up): Temporal retries its batch, whose recipients already
    sent answer from their delivery rows (keyed by broadcast and customer) and are not sent again."""
    ids = customers(journeys, 15)
    email = journeys.activities.channels["email"]
    real_send = email.send
    calls = 0

    async def flaky(message: OutboundMessage) -> Receipt:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise RetryableDeliveryError("connection reset")
        return await real_send(message)

    email.send = flaky  # type: ignore[method-assign]
    outcome = await journeys.outcome(await start(journeys, ids))

    assert outcome.status == "completed"
    assert Counter(str(m["To"]) for m in smtp.messages) == Counter(f"{c}@example.com" for c in ids)
    assert calls == 16  # every recipient once, and the one that failed again


async def test_send_at_waits_and_local_time_sends_at_nine_in_each_zone(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    journeys.customer("hanoi", email="hanoi@example.com", timezone="Asia/Ho_Chi_Minh")
    journeys.customer("paris", email="paris@example.com", timezone="Europe/Paris")
    send_at = (datetime.now().astimezone() + timedelta(days=2)).replace(microsecond=0)
    handle = await start(journeys, ["hanoi", "paris"], send_at=send_at, local_time="09:00")

    async def waiting_for_send_at() -> bool:  # its first timer: nothing can be sent before it fires
        history = await handle.fetch_history()
        return any(e.HasField("timer_started_event_attributes") for e in history.events)

    await eventually(waiting_for_send_at, 30, "the broadcast to wait for its send_at")
    assert smtp.messages == []
    assert broadcast_of(journeys, handle).status == BroadcastStatus.SCHEDULED

    assert (await journeys.outcome(handle)).status == "completed"
    assert sorted(str(m["To"]) for m in smtp.messages) == ["hanoi@example.com", "paris@example.com"]
    due = {r.customer_id: r.due_at for r in journeys.store.broadcasts.recipients(handle.id.split(":")[1])}
    for customer_id, zone in (("hanoi", "Asia/Ho_Chi_Minh"), ("paris", "Europe/Paris")):
        local = due[customer_id].astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0)
        assert send_at <= due[customer_id] < send_at + timedelta(days=1)


async def test_pause_holds_the_sending_and_resume_finishes_it(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    ids = customers(journeys, 6)
    send_at = datetime.now().astimezone() + timedelta(hours=1)
    handle = await start(journeys, ids, send_at=send_at)
    await handle.signal("pause")
    # Past send_at, by the test server's clock alone (unlocked, it would skip on past a paused broadcast).
    await journeys.skip(timedelta(hours=1, minutes=1))
    await eventually(
        lambda: broadcast_of(journeys, handle).status == BroadcastStatus.PAUSED, 10, "the broadcast to pause"
    )
    assert smtp.messages == []
    await handle.signal("resume")
    assert (await journeys.outcome(handle)).status == "completed"
    assert len(smtp.messages) == 6


async def test_cancel_before_send_at_sends_nothing(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
    handle = await start(
        journeys, customers(journeys, 3), send_at=datetime.now().astimezone() + timedelta(days=1)
    )
    await handle.signal("cancel")
    assert (await journeys.outcome(handle)).status == "cancelled"
    assert smtp.messages == []
    assert broadcast_of(journeys, handle).status == BroadcastStatus.CANCELLED


class TestWithAnEmailRateLimit:
    @pytest.fixture
    def journey_settings(self) -> dict[str, Any]:
        return {"broadcast_batch_size": 5, "email_rate_limit": 1000}

    async def test_batches_go_through_the_channels_own_queue(
        self, journeys: JourneyHarness, smtp: SmtpInbox
    ) -> None:
        ids = customers(journeys, 7)
        handle = await start(journeys, ids)
        assert (await journeys.outcome(handle)).status == "completed"
        assert len(smtp.messages) == 7
        queues = set()
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                attributes = event.activity_task_scheduled_event_attributes
                queues.add((attributes.activity_type.name, attributes.task_queue.name))
        queue = journeys.settings.task_queue
        assert ("send_broadcast_batch", f"{queue}.email") in queues
        assert ("plan_broadcast", queue) in queues


class TestWithATemplate:
    @pytest.fixture
    def journey_settings(self, tmp_path: Path) -> dict[str, Any]:
        folder = tmp_path / "templates" / "broadcasts"
        folder.mkdir(parents=True)
        (folder / "winter.email.en.html").write_text(
            "{% block subject %}Winter, {{ customer.first_name }}{% endblock %}<p>Cold deals</p>"
        )
        (folder / "winter.email.en.txt").write_text("Cold deals")
        return {"broadcast_batch_size": 5, "templates_dir": tmp_path / "templates"}

    async def test_a_named_template_is_looked_up_under_broadcasts(
        self, journeys: JourneyHarness, smtp: SmtpInbox
    ) -> None:
        journeys.customer("t1", email="t1@example.com", attributes={"first_name": "Binh"})
        handle = await start(journeys, ["t1"], content=None, template="winter")
        assert (await journeys.outcome(handle)).status == "completed"
        [mail] = smtp.messages
        assert mail["Subject"] == "Winter, Binh"


async def test_a_broadcast_to_a_segment_made_over_the_api_reaches_exactly_its_members_once(
    journeys: JourneyHarness, smtp: SmtpInbox
) -> None:
    """Over the API alone: a segment, the customers and events that move them into it, a broadcast to it; the
    API's router starts the broadcast on the harness's test server."""
    settings = journeys.settings.model_copy(update={"database_url": str(journeys.store.engine.url)})
    app = create_app(settings, journeys.registry, run_relay=False)
    app.state.relay = journeys.relay  # the harness's router, on its time-skipping server
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as api:
        condition = {
            "all": [
                {"attribute": "city", "op": "eq", "value": "Hà Nội"},
                {"event": "order_placed", "count": {"gte": 1}},
            ]
        }
        made = await api.post("/v1/segments", json={"name": "hanoi_buyers", "condition": condition})
        assert made.status_code == 201 and made.json()["size"] == 0
        for n in range(8):
            city = "Hà Nội" if n < 5 else "Huế"
            profile = {"id": f"s{n}", "email": f"s{n}@example.com", "attributes": {"city": city}}
            assert (await api.post("/v1/customers", json=profile)).status_code == 201
        # Buyers: s0, s1, s2 in Hà Nội (members), s5 in Huế (not); s3 and s4 in Hà Nội have not bought.
        orders = [{"id": f"o{n}", "customer_id": f"s{n}", "name": "order_placed"} for n in (0, 1, 2, 5)]
        assert (await api.post("/v1/events/batch", json={"events": orders})).json()["accepted"] == 4
        assert (await api.get("/v1/segments/hanoi_buyers")).json()["size"] == 3

        body = {
            "name": "hn",
            "segment": "hanoi_buyers",
            "via": ["email"],
            "content": {"email": SALE["email"]["en"]},
        }
        answer = await api.post("/v1/broadcasts", json=body)
        assert answer.status_code == 201, answer.text
        broadcast_id = answer.json()["id"]
        handle = journeys.env.client.get_workflow_handle(
            workflow_id(broadcast_id), result_type=BroadcastOutcome
        )
        assert (await journeys.outcome(handle)).status == "completed"
        got = (await api.get(f"/v1/broadcasts/{broadcast_id}")).json()
    app.state.store.engine.dispose()
    assert Counter(str(m["To"]) for m in smtp.messages) == Counter(f"s{n}@example.com" for n in (0, 1, 2))
    assert (got["status"], got["total"], got["sent"], got["pending"]) == ("completed", 3, 3, 0)
