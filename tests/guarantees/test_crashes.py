"""Processes killed mid-flight (real processes on loopback): the worker with journeys in the middle of
sending, and the API between accepting events and relaying them. Nothing is lost; nothing is sent twice."""

from __future__ import annotations

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
from touchflow.models import CustomerIn, DeliveryStatus, EventIn
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import DevServer, connect, free_port, terminate, wait_for_port
from touchflow.testing import SmtpInbox, eventually
from touchflow.worker import build_activities, build_worker

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


async def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, temporal: DevServer, store: Store, settings: Settings, smtp: SmtpInbox
) -> None:
    customers = [f"k{i:03d}" for i in range(200)]
    for customer in customers:
        store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
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
    interrupted = {
        f"{d.customer_id}@example.com"
        for c in customers
        for d in store.deliveries.of_customer(c)
        if any(a.get("outcome") == "interrupted" for a in d.attempts)
    }
    twice = {rcpt for rcpt, n in by_recipient.items() if n > 1}
    assert twice <= interrupted
    assert sum(by_recipient.values()) - len(customers) <= len(interrupted)
    # every journey went on past the crash, to its next step and its wait for the nudge
    for customer in customers:
        steps = {d.step: d.status for d in store.deliveries.of_customer(customer)}
        assert steps == {"welcome": DeliveryStatus.SENT, "welcome_inbox": DeliveryStatus.SENT}
    running = await client.count_workflows("WorkflowType = 'welcome' AND ExecutionStatus = 'Running'")
    assert running.count == len(customers)


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
