"""Processes killed mid-flight (real processes on loopback): the worker with journeys (and a broadcast) in the
middle of sending, and the API between accepting events and relaying them. Nothing is lost; nothing is sent
twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, SECRET
from tests.support.harness import TEST_REGISTRY
from touchflow.activities.broadcast import recipient_input
from touchflow.channels.email import Email
from touchflow.models import Broadcast, BroadcastStatus, CustomerIn, DeliveryStatus, EventIn
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import DevServer, connect, free_port, terminate, wait_for_port
from touchflow.testing import SmtpInbox, eventually
from touchflow.worker import build_activities, build_worker
from touchflow.workflows.broadcast import BroadcastOutcome, workflow_id

pytestmark = pytest.mark.e2e


@pytest.fixture
async def temporal(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    yield server
    server.stop()


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    """The processes of these tests share one SQLite file."""
    return sqlite_store


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], store: Store, temporal: DevServer, smtp: SmtpInbox
) -> Settings:
    return make_settings(
        database_url=str(store.engine.url),
        temporal_address=temporal.address,
        smtp_port=smtp.port,
        delivery_attempt_timeout="3s",
        relay_interval="100ms",
    )


def environment(settings: Settings) -> dict[str, str]:
    """The settings as a child process reads them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHFLOW_")}
    return env | {
        "TOUCHFLOW_DATABASE_URL": settings.resolved_database_url,
        "TOUCHFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
        "TOUCHFLOW_SMTP_HOST": settings.smtp_host,
        "TOUCHFLOW_SMTP_PORT": str(settings.smtp_port),
        "TOUCHFLOW_API_KEYS": API_KEY,
        "TOUCHFLOW_SECRET_KEY": SECRET,
        "TOUCHFLOW_QUIET_HOURS": "off",
        "TOUCHFLOW_FREQUENCY_CAPS": "",
        "TOUCHFLOW_DELIVERY_ATTEMPT_TIMEOUT": "3s",
        "TOUCHFLOW_RELAY_INTERVAL": "100ms",
        "TOUCHFLOW_LOG_LEVEL": "WARNING",
        "TOUCHFLOW_WORKER_METRICS_PORT": "0",  # two workers at once would contend for one probe port
    }


def spawn(command: str, settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "touchflow.cli", command],
        env=environment(settings) | extra,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def emailable(store: Store, prefix: str, count: int) -> list[str]:
    """`count` customers with an email address (`<id>@example.com`), their ids in order."""
    customers = [f"{prefix}{i:03d}" for i in range(count)]
    for customer in customers:
        store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
    return customers


def interrupted_sends(store: Store, customers: list[str]) -> set[str]:
    """The customers with a delivery whose attempt a kill interrupted (the provider may have it twice)."""
    return {
        d.customer_id
        for c in customers
        for d in store.deliveries.of_customer(c)
        if any(a.get("outcome") == "interrupted" for a in d.attempts)
    }


async def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, temporal: DevServer, store: Store, settings: Settings, smtp: SmtpInbox
) -> None:
    customers = emailable(store, "k", 200)
    await temporal.start()
    client = await connect(settings)
    relay = Relay(
        store, lambda: connect(settings), settings.task_queue, settings.relay_interval, 200, TEST_REGISTRY
    )
    smtp.latency = 0.05  # a provider slow enough that many sends are in flight when the worker dies
    log = tmp_path / "worker.log"
    first = spawn("worker", settings, log)
    second = None
    try:
        events = [EventIn(id=f"su-{c}", customer_id=c, name="signed_up") for c in customers]
        store.events.ingest(events, TEST_REGISTRY.routed)
        while await relay.relay_once():
            pass
        await smtp.wait_for(40, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = len(smtp.messages)
        second = spawn("worker", settings, log)

        def both_steps_sent() -> bool:
            rows = [store.deliveries.of_customer(c) for c in customers]
            return all(sum(d.status == DeliveryStatus.SENT for d in row) == 2 for row in rows)

        await eventually(both_steps_sent, timeout=120, what="every journey's two welcome steps")
    finally:
        terminate(first)
        if second is not None:
            terminate(second)
    assert killed_at < len(customers), "the worker died after every send: nothing was in flight"

    by_recipient = Counter(rcpt for _, [rcpt] in smtp.envelopes)
    assert set(by_recipient) == {f"{c}@example.com" for c in customers}  # none lost
    message_ids = Counter(str(m["Message-ID"]) for m in smtp.messages)
    assert len(message_ids) == len(customers)  # one message per journey step
    # A second copy can only come from the one documented window (the provider took it, the worker died
    # before recording it): such a step is marked interrupted and carries the same Message-ID.
    interrupted = {f"{c}@example.com" for c in interrupted_sends(store, customers)}
    twice = {rcpt for rcpt, n in by_recipient.items() if n > 1}
    assert twice <= interrupted
    assert sum(by_recipient.values()) - len(customers) <= len(interrupted)
    # every journey went on past the crash, to its next step and its wait for the nudge
    for customer in customers:
        steps = {d.step: d.status for d in store.deliveries.of_customer(customer)}
        assert steps == {"welcome": DeliveryStatus.SENT, "welcome_inbox": DeliveryStatus.SENT}
    running = await client.count_workflows("WorkflowType = 'welcome' AND ExecutionStatus = 'Running'")
    assert running.count == len(customers)


BATCH = 20  # recipients per broadcast batch in the test below: 15 batches, 4 in flight at a time


async def test_a_broadcast_survives_its_worker_killed_mid_send_without_a_duplicate_or_a_gap(
    tmp_path: Path, temporal: DevServer, store: Store, settings: Settings, smtp: SmtpInbox
) -> None:
    customers = emailable(store, "b", 300)
    content = {"email": {"subject": "Sale", "text": "20% off", "html": "<p>20% off</p>"}}
    store.broadcasts.create(
        Broadcast(
            id="b-crash", name="sale", audience={"customer_ids": customers}, via=["email"], content=content
        )
    )
    await temporal.start()
    client = await connect(settings)
    relay = Relay(
        store, lambda: connect(settings), settings.task_queue, settings.relay_interval, 1, TEST_REGISTRY
    )
    # The provider answers DATA late, after it has the message: a worker killed then leaves messages the
    # provider took but the worker never recorded (the one documented way to a second copy).
    smtp.data_latency = 0.05
    log = tmp_path / "worker.log"
    small_batches = {"TOUCHFLOW_BROADCAST_BATCH_SIZE": str(BATCH)}
    first = spawn("worker", settings, log, **small_batches)
    second = None
    try:
        router = await relay.router()
        await router.start_broadcast("b-crash", None, settings.delivery_attempt_timeout)
        await smtp.wait_for(len(customers) // 2, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = len(smtp.messages)
        second = spawn("worker", settings, log, **small_batches)
        # (About 10 s of the wait is Temporal's sticky-queue timeout: the workflow's next task waits for the
        # dead worker that long before any worker may take it.)
        handle = client.get_workflow_handle(workflow_id("b-crash"), result_type=BroadcastOutcome)
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        terminate(first)
        if second is not None:
            terminate(second)
    assert killed_at < len(customers), "the worker died after every send: nothing was in flight"
    assert (outcome.status, outcome.total) == ("completed", len(customers))
    broadcast = store.broadcasts.get("b-crash")
    assert broadcast is not None and broadcast.status == BroadcastStatus.COMPLETED
    assert store.broadcasts.outcome_counts("b-crash") == [("sent", None, len(customers))]  # sent == total

    by_recipient: dict[str, list[str]] = {}
    for message in smtp.messages:
        by_recipient.setdefault(str(message["To"]), []).append(str(message["Message-ID"]))
    assert set(by_recipient) == {f"{c}@example.com" for c in customers}  # no gap
    # Every copy a recipient got carries their one Message-ID (derived from broadcast and customer)...
    email = Email(host="", port=0, sender=settings.email_from)
    for customer in customers:
        assert set(by_recipient[f"{customer}@example.com"]) == {
            email.message_id(recipient_input(broadcast, customer).key)
        }
    # ...and a second copy only where the delivery records an attempt interrupted by the kill.
    interrupted = interrupted_sends(store, customers)
    twice = {c for c in customers if len(by_recipient[f"{c}@example.com"]) > 1}
    assert twice <= interrupted
    assert all(len(by_recipient[f"{c}@example.com"]) <= 2 for c in customers)
    # Interrupted are only the recipients of the batches in flight at the kill, not those recorded before.
    assert len(interrupted) <= settings.broadcast_concurrency * BATCH


async def test_an_api_killed_before_relaying_relays_everything_after_restart(
    tmp_path: Path, temporal: DevServer, store: Store, settings: Settings, smtp: SmtpInbox
) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    # Temporal is not up yet: the API can accept and store, but cannot relay.
    api = spawn("api", settings, log, TOUCHFLOW_API_PORT=str(port))
    customers = [f"a{i:02d}" for i in range(50)]
    try:
        await wait_for_port("127.0.0.1", port, 30)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            for customer in customers:
                await http.post("/v1/customers", json={"id": customer, "email": f"{customer}@example.com"})
            batch = [{"id": f"su-{c}", "customer_id": c, "name": "signed_up"} for c in customers]
            answer = (await http.post("/v1/events/batch", json={"events": batch})).json()
        assert answer["accepted"] == len(customers)
    finally:
        api.send_signal(signal.SIGKILL)
        api.wait(10)
    assert store.outbox.size() == len(customers)  # accepted, kept, not yet relayed

    await temporal.start()
    client = await connect(settings)
    restarted = spawn("api", settings, log, TOUCHFLOW_API_PORT=str(free_port()))
    try:
        async with build_worker(
            client, settings, build_activities(settings, TEST_REGISTRY, store), TEST_REGISTRY
        ):
            await eventually(lambda: store.outbox.size() == 0, timeout=60, what="the relay to drain")
            await smtp.wait_for(len(customers), timeout=60)
    finally:
        terminate(restarted)
    assert Counter(rcpt for _, [rcpt] in smtp.envelopes) == {f"{c}@example.com": 1 for c in customers}
