"""Erasure leaves nothing behind in Temporal: every journey history of the customer goes, open or closed.

Event properties can hold personal data (a delivery address), and they travel in journey histories; so the
histories themselves go. Checked on the real dev server, whose histories persist (the test server's do not).
Payloads are decoded before they are searched: a search of the raw, base64-encoded JSON could never fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import API_KEY
from tests.support.harness import TEST_REGISTRY
from touchflow.api.main import create_app
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import DevServer, connect, ensure_search_attributes, free_port
from touchflow.testing import SmtpInbox, eventually
from touchflow.worker import build_activities, build_worker

pytestmark = pytest.mark.e2e
ADDRESS = "12 Ngõ Huế, Hai Bà Trưng, Hà Nội"


def decoded_payloads(history_json: str) -> str:
    """Every payload of a history, decoded from its base64 `data`, joined: what a search must look in."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and "metadata" in node and isinstance(node["data"], str):
                text = base64.b64decode(node["data"]).decode("utf-8", "replace")
                with contextlib.suppress(ValueError):  # JSON escapes non-ASCII: read back the text it holds
                    text = json.dumps(json.loads(text), ensure_ascii=False)
                found.append(text)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join(found)


@pytest.fixture
async def temporal(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    await server.start()
    yield server
    server.stop()


async def test_erasing_a_customer_deletes_every_journey_history(
    tmp_path: Path, temporal: DevServer, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'touchflow.db'}",
        temporal_address=temporal.address,
        smtp_port=smtp.port,
        relay_interval="100ms",
    )
    client: Client = await connect(settings)
    await ensure_search_attributes(client)
    app = create_app(settings, TEST_REGISTRY)
    store: Store = app.state.store
    async with build_worker(
        client, settings, build_activities(settings, TEST_REGISTRY, store), TEST_REGISTRY
    ):
        with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
            api.post("/v1/customers", json={"id": "lan", "email": "lan@example.com", "locale": "vi"})
            api.post("/v1/customers", json={"id": "stays", "email": "stays@example.com"})
            order = {"order_id": "o1", "total": 10, "currency": "USD", "ship_to": ADDRESS}
            for customer in ("lan", "stays"):
                signup = {"id": f"su-{customer}", "customer_id": customer, "name": "signed_up"}
                assert api.post("/v1/events", json=signup).status_code == 202
            await smtp.wait_for(2, timeout=60)  # the welcome emails
            for customer in ("lan", "stays"):
                ordered = {"id": f"o-{customer}", "customer_id": customer, "name": "order_placed"}
                assert api.post("/v1/events", json={**ordered, "properties": order}).status_code == 202
            await smtp.wait_for(4, timeout=60)  # and the order confirmations

            lan = client.get_workflow_handle("post_purchase:lan:o1")
            assert ADDRESS in decoded_payloads((await lan.fetch_history()).to_json())  # the check can see it

            answer = api.delete("/v1/customers/lan")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            # welcome ended by the order (its goal), post-purchase and loyalty were still running
            assert body["journeys_ended"] == 2
            assert body["histories_deleted"] == 3
            assert body["removed"]["engagements"] == 0

    # Temporal deletes asynchronously: on the dev server about half a minute later.
    await asyncio.gather(
        *(gone(client.get_workflow_handle(w)) for w in ("welcome:lan", "post_purchase:lan:o1", "loyalty:lan"))
    )

    async def none_listed() -> bool:
        return [e.id async for e in client.list_workflows('CustomerId = "lan"')] == []

    await eventually(none_listed, 30, "the visibility store to forget the customer's runs")
    kept = client.get_workflow_handle("post_purchase:stays:o1")
    assert ADDRESS in decoded_payloads((await kept.fetch_history()).to_json())  # others are left alone


async def gone(handle: WorkflowHandle[Any, Any]) -> None:
    async def not_found() -> bool:
        try:
            await handle.fetch_history()
        except RPCError as exc:
            return exc.status == RPCStatusCode.NOT_FOUND
        return False

    await eventually(not_found, 90, f"the history of {handle.id} to be deleted")
