"""The funnels' attribution and A/B verdicts, and a customer's timeline, over the seeded scenario of
tests/support/insight.py (known figures), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.conftest import API_KEY
from tests.support import rows
from tests.support.insight import FEATURED, REGISTRY, Seeded, seed
from touchflow.api.main import create_app
from touchflow.models import Attribution, Delivery, DeliveryStatus, Event, FunnelRollup, JourneyStatus
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.storage.base import table


@pytest.fixture
def seeded(db_url: str, make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, Seeded]]:
    app = create_app(make_settings(database_url=db_url), REGISTRY, run_relay=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        store: Store = app.state.store
        yield client, seed(store)


def test_the_funnel_has_attributed_conversions_revenue_and_verdicts_over_the_period(
    seeded: tuple[TestClient, Seeded],
) -> None:
    api, seeded_at = seeded
    funnel = api.get("/v1/journeys/winback/funnel").json()
    assert (funnel["entered"], funnel["converted"], funnel["exited"], funnel["active"]) == (400, 122, 53, 225)
    assert funnel["conversion_rate"] == 0.305
    assert (funnel["attributed_conversions"], funnel["revenue"]) == (122, 8160.0)
    offer, picks, last = funnel["steps"]
    assert (offer["reached"], offer["sent"], offer["opened"], offer["clicked"]) == (400, 400, 220, 100)
    assert (offer["attributed_conversions"], offer["revenue"], offer["to_next"]) == (70, 3500.0, 0.75)
    assert (picks["reached"], picks["sent"], picks["skipped"], picks["failed"]) == (300, 240, 40, 20)
    assert (picks["opened"], picks["clicked"], picks["dropped_before"]) == (90, 30, 100)
    assert picks["by_channel"] == {"web_push": 200, "email": 40}
    assert picks["reasons"] == {
        "skipped": {"no consent for marketing": 40},
        "failed": {"email: 550 mailbox unavailable": 20},
    }
    assert (picks["attributed_conversions"], picks["revenue"], picks["to_next"]) == (27, 2160.0, 0.8333)
    assert (last["sent"], last["delivered"], last["attributed_conversions"], last["revenue"]) == (
        250,
        150,
        25,
        2500.0,
    )
    assert last["to_next"] is None
    subject, layout = funnel["experiments"]
    assert (subject["step"], subject["winner"]) == ("win_offer", "b") and subject["p_value"] < 0.05
    a, b = subject["variants"]
    assert (a["sent"], a["opened"], a["clicked"], a["attributed_conversions"]) == (200, 100, 40, 20)
    assert (b["sent"], b["opened"], b["clicked"], b["attributed_conversions"]) == (200, 120, 60, 50)
    assert (layout["winner"], layout["p_value"] > 0.05) == (None, True)
    assert [v["attributed_conversions"] for v in layout["variants"]] == [12, 15]
    assert "two-proportion z-test" in layout["test"]

    # The first day only: the entries (an hour before), win_offer and its orders.
    start = seeded_at.start
    day = {
        "since": (start - timedelta(hours=2)).isoformat(),
        "until": (start + timedelta(hours=12)).isoformat(),
    }
    first = api.get("/v1/journeys/winback/funnel", params=day).json()
    assert (first["entered"], first["attributed_conversions"], first["revenue"]) == (400, 70, 3500.0)
    assert [s["sent"] for s in first["steps"]] == [400, 0, 0]
    assert first["since"] is not None and first["until"] is not None
    bad = api.get("/v1/journeys/winback/funnel", params={"since": "2026-11-01T00:00:00"})
    assert bad.status_code == 422 and "time zone" in bad.json()["message"]
    backwards = api.get("/v1/journeys/winback/funnel", params={"since": day["until"], "until": day["since"]})
    assert backwards.status_code == 422 and "before until" in backwards.json()["message"]


def test_a_customers_timeline_in_pages(seeded: tuple[TestClient, Seeded]) -> None:
    api, seeded_at = seeded
    timeline = api.get(f"/v1/customers/{FEATURED}/timeline").json()
    assert timeline["consents"] == {"email.marketing": True}
    assert timeline["lifecycle_stage"] == "customer"
    kinds = [item["kind"] for item in timeline["items"]]
    assert {"event", "journey_entered", "journey_ended", "touchpoint", "segment_entered"} <= set(kinds)
    times = [item["at"] for item in timeline["items"]]
    assert times == sorted(times, reverse=True)
    [touch] = [i for i in timeline["items"] if i["kind"] == "touchpoint"]
    assert (touch["journey"], touch["step"], touch["channel"], touch["variant"]) == (
        "winback",
        "win_offer",
        "email",
        "b",
    )
    assert (touch["outcome"], touch["clicks"], touch["revenue"]) == ("converted", 1, 50.0)
    assert touch["conversion_event_id"] == f"order-{FEATURED}-1"
    [order] = [i for i in timeline["items"] if i["kind"] == "event"]
    assert order["attributed_to"]["step"] == "win_offer" and order["revenue"] == 50.0
    [ended] = [i for i in timeline["items"] if i["kind"] == "journey_ended"]
    assert (ended["status"], ended["ended_by"]) == ("converted", "order_placed")
    stages = [i["lifecycle_stage"] for i in timeline["items"] if i["lifecycle_stage"]]
    assert "customer" in stages

    pages, cursor = [], None
    while True:
        page = api.get(
            f"/v1/customers/{FEATURED}/timeline",
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
        ).json()
        pages.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == timeline["items"]
    later = {"since": (seeded_at.start + timedelta(hours=1)).isoformat()}  # after its message and entry
    kinds_later = {
        i["kind"] for i in api.get(f"/v1/customers/{FEATURED}/timeline", params=later).json()["items"]
    }
    assert "event" in kinds_later and not kinds_later & {"touchpoint", "journey_entered"}
    assert api.get("/v1/customers/nobody/timeline").status_code == 404
    broken = api.get(f"/v1/customers/{FEATURED}/timeline", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 422 and "cursor" in broken.json()["message"]


def test_kept_rollups_and_attributions_follow_every_change(
    seeded: tuple[TestClient, Seeded], make_settings: Callable[..., Settings], db_url: str
) -> None:
    api, seeded_at = seeded
    store: Store = api.app.state.store  # type: ignore[attr-defined]
    with (
        store.engine.begin() as conn
    ):  # the orders arrived long ago: their credits are kept, not matched live
        conn.execute(update(table(Event)).values(received_at=seeded_at.start))
    before = api.get("/v1/journeys/winback/funnel").json()
    assert (before["attributed_conversions"], before["revenue"]) == (122, 8160.0)
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(table(Attribution))) == 128  # every order
        assert conn.scalar(select(func.count()).select_from(table(FunnelRollup))) > 0

    # Things change in hours already rolled up: a late click, a receipt turning into a failure, a run ending.
    deliveries = {d.step: d for d in store.deliveries.of_customer("c100", limit=10)}
    assert store.deliveries.record_engagement(
        deliveries["win_offer"].id or 0, "click", "https://shop.example"
    )
    with store.engine.connect() as conn:
        last = conn.scalar(
            select(table(Delivery).c.id).where(table(Delivery).c.step == "last_chance").limit(1)
        )
    rows.update_delivery(store, last, status=DeliveryStatus.FAILED, error="zalo: -124 quota")
    store.journeys.leave("run-300", JourneyStatus.CONVERTED, "order_placed")  # a run that was active
    after = api.get("/v1/journeys/winback/funnel").json()
    assert (after["converted"], after["active"], after["entered"]) == (123, 224, 400)
    offer, _, last_chance = after["steps"]
    assert offer["clicked"] == 101
    assert (last_chance["sent"], last_chance["failed"]) == (249, 1)
    assert last_chance["reasons"] == {"failed": {"zalo: -124 quota": 1}}

    # Another window is another rule: the kept credits start over (an hour: only the broadcast's orders,
    # an hour after it, still count).
    app = create_app(make_settings(database_url=db_url, attribution_window="1h"), REGISTRY, run_relay=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as hour:
        assert hour.get("/v1/journeys/winback/funnel").json()["attributed_conversions"] == 0
        stages = {s["stage"]: s for s in hour.get("/v1/stages").json()}
        assert (stages["retention"]["attributed_conversions"], stages["retention"]["revenue"]) == (5, 200.0)
