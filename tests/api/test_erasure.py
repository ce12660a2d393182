"""DELETE /v1/customers/{id}: journeys end, personal data goes, anonymous counts stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import API_KEY
from touchflow.api.main import create_app
from touchflow.models import CustomerIn, Delivery, EventIn
from touchflow.settings import Settings
from touchflow.storage.erasure import ERASED
from touchflow.temporal import free_port
from touchflow.testing import JourneyHarness, SmtpInbox


async def test_erasure_ends_journeys_and_keeps_only_anonymous_counts(
    journeys: JourneyHarness, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    store = journeys.store
    store.customers.upsert(CustomerIn(id="gone", email="gone@example.com", attributes={"first_name": "X"}))
    store.customers.upsert(CustomerIn(id="stays", email="stays@example.com"))
    gone = await journeys.post("gone", "signed_up")
    stays = await journeys.post("stays", "signed_up")
    await smtp.wait_for(2)
    # Both past their first steps (the inbox message is recorded after the email goes out).
    for run in (gone, stays):
        await journeys.state_when(run, lambda s: "waiting" in s.detail)

    app = create_app(make_settings(database_url=str(store.engine.url)), run_relay=False)
    app.state.relay = journeys.relay
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        answer = api.delete("/v1/customers/gone")
        assert answer.status_code == 200
        body = answer.json()
        assert body["journeys_ended"] == 1
        assert body["removed"]["customers"] == 1 and body["removed"]["events"] == 1
        assert api.get("/v1/customers/gone").status_code == 404
        assert api.delete("/v1/customers/gone").status_code == 404
        assert api.get("/v1/customers/stays").status_code == 200

    assert (await gone.describe()).status == WorkflowExecutionStatus.TERMINATED
    assert store.events.of_customer("gone") == [] and store.customers.get("gone") is None
    with Session(store.engine) as session:
        rows = list(session.scalars(select(Delivery)))
    assert sorted((d.customer_id, d.journey, d.step, d.status) for d in rows) == [
        (ERASED, "welcome", "welcome", "sent"),
        (ERASED, "welcome", "welcome_inbox", "sent"),
        ("stays", "welcome", "welcome", "sent"),
        ("stays", "welcome", "welcome_inbox", "sent"),
    ]
    assert body["removed"]["inbox_messages"] == 1
    anonymous = next(d for d in rows if d.customer_id == ERASED)
    assert "gone" not in anonymous.key and anonymous.workflow_id == ERASED and anonymous.attempts == []


def test_erasure_needs_an_admin_key(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(api_keys=["ingest:ingest-key-1", "read:read-key-12"]), run_relay=False)
    with TestClient(app) as client:
        for key in ("ingest-key-1", "read-key-12"):
            response = client.delete("/v1/customers/x", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 403


def test_without_temporal_erasure_answers_503_and_deletes_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(temporal_address=f"127.0.0.1:{free_port()}")  # nothing listens there
    with TestClient(
        create_app(settings, run_relay=False), headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        api.post("/v1/customers", json={"id": "kept", "email": "kept@example.com"})
        answer = api.delete("/v1/customers/kept")
        assert answer.status_code == 503
        assert "nothing was deleted" in answer.json()["detail"]
        assert api.get("/v1/customers/kept").json()["customer"]["email"] == "kept@example.com"


async def test_a_relay_that_claimed_an_event_before_the_erasure_starts_nothing_after_it(
    journeys: JourneyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = journeys.store
    store.customers.upsert(CustomerIn(id="late", email="late@example.com"))
    store.events.ingest(
        [EventIn(id="su-late", customer_id="late", name="signed_up")], journeys.registry.routed
    )
    claim = store.outbox.claim

    def claim_then_erase(*args: Any, **kwargs: Any) -> Any:
        claimed = claim(*args, **kwargs)
        store.erase("late")  # the DELETE lands between the relay's claim and its signal
        return claimed

    monkeypatch.setattr(store.outbox, "claim", claim_then_erase)
    await journeys.relay.relay_once()
    with pytest.raises(RPCError) as raised:
        await journeys.handle("welcome", "late").describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND
    assert store.outbox.size() == 0


def test_erasing_a_visitor_merged_since_answers_409_naming_the_customer_and_deletes_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(temporal_address=f"127.0.0.1:{free_port()}")  # never reached
    with TestClient(
        create_app(settings, run_relay=False), headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        store = api.app.state.store  # type: ignore[attr-defined]
        store.events.ingest([EventIn(id="p1", customer_id="anon:v3", name="page_viewed")], [])
        store.identities.merge("anon:v3", "u-3")
        answer = api.delete("/v1/customers/anon:v3")
        assert answer.status_code == 409
        assert "merged into customer 'u-3': erase that customer" in answer.json()["detail"]
        assert store.events.get("p1").customer_id == "u-3"
        assert store.identities.known_as("anon:v3") == "u-3"
