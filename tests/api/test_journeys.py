"""GET /v1/journeys and /v1/journeys/{name}/funnel: entered → messages → converted, and the drop-offs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.conftest import API_KEY
from tests.support import rows
from touchflow.api.main import create_app
from touchflow.models import CustomerIn, Delivery, DeliveryStatus, JourneyStatus
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import JourneyHarness, SmtpInbox
from touchflow.workflows.registry import BUILTIN_JOURNEYS

BUILTINS = {name: cls.spec for name, cls in BUILTIN_JOURNEYS.items()}


async def test_the_welcome_funnel_after_real_runs(
    journeys: JourneyHarness, smtp: SmtpInbox, make_settings: Callable[..., Settings]
) -> None:
    for customer in ("f1", "f2", "f3"):
        journeys.store.customers.upsert(CustomerIn(id=customer, email=f"{customer}@example.com"))
        handle = await journeys.post(customer, "signed_up")
        await journeys.state_when(handle, lambda s: len(s.sent) == 2)
    buyer = journeys.env.client.get_workflow_handle("welcome:f1")
    await journeys.post("f1", "order_placed", {"order_id": "o-1", "total": 10, "currency": "USD"})
    await journeys.state_when(buyer, lambda s: s.detail.startswith("ended"))

    app = create_app(make_settings(database_url=str(journeys.store.engine.url)), run_relay=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        funnel = api.get("/v1/journeys/welcome/funnel").json()
        listed = api.get("/v1/journeys").json()
    assert (funnel["entered"], funnel["active"], funnel["converted"]) == (3, 2, 1)
    assert funnel["conversion_rate"] == round(1 / 3, 4)
    steps = {s["step"]: s for s in funnel["steps"]}
    assert list(steps) == ["welcome", "welcome_inbox", "first_purchase_nudge"]
    assert (steps["welcome"]["sent"], steps["welcome"]["by_channel"]) == (3, {"email": 3})
    assert (steps["welcome_inbox"]["sent"], steps["welcome_inbox"]["stage"]) == (3, "awareness")
    assert (steps["first_purchase_nudge"]["reached"], steps["first_purchase_nudge"]["dropped_before"]) == (
        0,
        3,
    )
    assert funnel["stages"] == {"awareness": 6, "consideration": 0}
    assert [j["journey"] for j in listed] == list(BUILTINS)


def test_funnel_counts_every_outcome_and_variant(api: TestClient) -> None:
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    for n, status in enumerate(
        [DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.CAPPED, DeliveryStatus.FAILED]
    ):
        store.journeys.enter(
            run_id=f"r{n}",
            workflow_id=f"abandoned_cart:c{n}:k",
            journey="abandoned_cart",
            customer_id=f"c{n}",
            entry_key="k",
        )
        row = store.deliveries.claim(
            Delivery(
                key=f"abandoned_cart:c{n}:k:1:cart_reminder_1",
                journey="abandoned_cart",
                step="cart_reminder_1",
                customer_id=f"c{n}",
                workflow_id=f"abandoned_cart:c{n}:k",
                variant="ab"[n % 2],
            )
        )
        rows.update_delivery(
            store, row.id or 0, status=status, channel="web_push" if status in ("sent", "delivered") else None
        )
    store.journeys.leave("r0", JourneyStatus.CONVERTED, "order_placed")
    store.journeys.leave("r3", JourneyStatus.EXITED, "cart_cleared")

    funnel = api.get("/v1/journeys/abandoned_cart/funnel").json()
    assert (funnel["entered"], funnel["converted"], funnel["exited"], funnel["active"]) == (4, 1, 1, 2)
    [first, second] = funnel["steps"]
    assert first["step"] == "cart_reminder_1" and first["channels"] == ["web_push", "email"]
    assert (first["reached"], first["sent"], first["delivered"], first["capped"], first["failed"]) == (
        4,
        2,
        1,
        1,
        1,
    )
    assert first["by_variant"] == {"a": 1, "b": 1} and first["by_channel"] == {"web_push": 2}
    assert second["dropped_before"] == 4
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1).isoformat()
    assert api.get("/v1/journeys/abandoned_cart/funnel", params={"since": later}).json()["entered"] == 0


def test_an_unknown_journey_is_404_and_reading_needs_the_read_scope(
    api: TestClient, make_settings: Callable[..., Settings]
) -> None:
    missing = api.get("/v1/journeys/nope/funnel")
    assert missing.status_code == 404 and "welcome" in missing.json()["detail"]
    app = create_app(make_settings(api_keys=["ingest:ingest-key-1"]), run_relay=False)
    with TestClient(app, headers={"Authorization": "Bearer ingest-key-1"}) as client:
        assert client.get("/v1/journeys").status_code == 403
