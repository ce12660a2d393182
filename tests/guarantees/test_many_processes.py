"""Many processes, one Temporal and one PostgreSQL: 2 `touchflow api` and 2 `touchflow worker` processes on
loopback. Events posted to both APIs, every journey delivers exactly once, both workers take work, and an
onsite stream opened on one API receives a message stored through the other."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import customer_headers
from tests.api.routes.test_inbox import EventStream, is_message
from tests.conftest import API_KEY
from tests.guarantees.test_crashes import spawn
from touchflow.models import DeliveryStatus
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import DevServer, free_port, terminate
from touchflow.testing import SmtpInbox, eventually

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def processes(
    settings: Settings, log: Path, count: int, command: str, port_setting: str
) -> AsyncIterator[list[str]]:
    """`count` processes of `command`, each on a port of its own; their base URLs once each is ready."""
    ports = [free_port() for _ in range(count)]
    extra = {
        "TOUCHFLOW_LOG_FORMAT": "json",
        "TOUCHFLOW_LOG_LEVEL": "INFO",
        "TOUCHFLOW_INBOX_POLL_INTERVAL": "100ms",
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            started.append(spawn(command, settings, log, **extra, **{port_setting: str(port)}))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            await eventually(lambda url=url: ready(url), timeout=60, what=f"{command} at {url} to be ready")
        yield urls
    finally:
        for process in started:
            terminate(process)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def delivered_by(url: str) -> float:
    """Steps a worker process sent, from its own /metrics."""
    page = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "touchflow_deliveries_total" and sample.labels["outcome"] == "sent"
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_apis_and_two_workers_share_one_temporal_and_one_database(
    tmp_path: Path, db_url: str, store: Store, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    temporal = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    await temporal.start()
    settings = make_settings(database_url=db_url, temporal_address=temporal.address, smtp_port=smtp.port)
    customers = [f"mp{i:02d}" for i in range(30)]
    log = tmp_path / "processes.log"
    try:
        async with (
            processes(settings, log, 2, "worker", "TOUCHFLOW_WORKER_METRICS_PORT") as workers,
            processes(settings, log, 2, "api", "TOUCHFLOW_API_PORT") as apis,
        ):
            headers = {"Authorization": f"Bearer {API_KEY}"}
            clients = [httpx.AsyncClient(base_url=url, headers=headers, timeout=10) for url in apis]
            async with clients[0], clients[1]:
                watched = "mp-stream"
                await clients[1].post(
                    "/v1/customers", json={"id": watched, "email": f"{watched}@example.com"}
                )
                tickets = await clients[0].post("/v1/inbox/stream-tickets", headers=customer_headers(watched))
                query = {"ticket": tickets.json()["ticket"]}
                async with clients[0].stream("GET", "/v1/inbox/stream", params=query) as response:
                    stream = EventStream(response)
                    assert await stream.next() == {"retry": "2000"}
                    for index, customer in enumerate(customers):
                        api = clients[index % 2]
                        await api.post(
                            "/v1/customers", json={"id": customer, "email": f"{customer}@example.com"}
                        )
                        event = {"id": f"su-{customer}", "customer_id": customer, "name": "signed_up"}
                        assert (await api.post("/v1/events", json=event)).status_code == 202
                    # The watched customer's sign-up goes to the other API; its inbox message, stored by
                    # whichever worker ran the step, reaches the stream held open on the first.
                    event = {"id": f"su-{watched}", "customer_id": watched, "name": "signed_up"}
                    assert (await clients[1].post("/v1/events", json=event)).status_code == 202
                    message = json.loads((await stream.until(is_message, timeout=60))["data"])
                    assert [m.id for m in store.inbox.after(watched, 0)] == [message["id"]]

            everyone = [*customers, watched]
            await smtp.wait_for(len(everyone), timeout=90)

            def all_delivered() -> bool:
                return all(
                    {d.step: d.status for d in store.deliveries.of_customer(c)}
                    == {"welcome": DeliveryStatus.SENT, "welcome_inbox": DeliveryStatus.SENT}
                    for c in everyone
                )

            await eventually(all_delivered, timeout=60, what="every customer's two welcome steps")
            took = [delivered_by(url) for url in workers]
    finally:
        temporal.stop()

    # Exactly once: one welcome email per customer, whichever API took the event and whichever worker sent.
    assert Counter(rcpt for _, [rcpt] in smtp.envelopes) == {f"{c}@example.com": 1 for c in everyone}
    assert store.outbox.size() == 0
    assert sum(took) == 2 * len(everyone) and all(n > 0 for n in took), took
    # Every process logged JSON, a delivery's lines with its workflow and event ids, no customer's address.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    delivered = [line for line in lines if line["message"] == "step delivered" and line["step"] == "welcome"]
    assert {(line["workflow_id"], line["event_id"]) for line in delivered} == {
        (f"welcome:{c}", f"su-{c}") for c in everyone
    }
    assert "@example.com" not in log.read_text()
