"""A seeded scenario of known figures for the funnels, the timeline and the dashboard: the `winback` journey
(three steps, two A/B experiments: one significant, one not), a broadcast, and the conversions after them.

Written straight into the store (bulk inserts, no Temporal), ten days ago, so a test reads the figures back:

    400 entered (an hour before the first message)
    win_offer      awareness      email          400 sent (a 200 / b 200), 220 opened, 100 clicked
      → 70 orders of 50 two hours later (a 20, b 50): credited to win_offer, 3,500 revenue
      → 30 exit (unsubscribed)
    product_picks  consideration  web_push/email 300 reached a day later: 240 sent (a 120 / b 120: web_push
      200, email 40), 40 skipped (no consent), 20 failed; 90 opened, 30 clicked
      → 27 orders of 80 (a 12, b 15): credited to product_picks, 2,160 revenue
    last_chance    purchase       zalo_zns/email 250 reached two days in: 250 sent (150 delivered by Zalo),
      60 opened, 25 clicked → 25 orders of 100: 2,500 revenue;  23 exit, 225 still active
    broadcast "december" (retention, email) to 50 of last_chance's buyers four days in; 5 of them order 40
      an hour later: credited to the broadcast (the last touch), 200 revenue
    one more order, six days after its customer's last message: outside the window, credited to nothing

    winback: entered 400, converted 122, exited 53, active 225, conversion 0.305, 122 attributed, 8,160
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from touchflow.journeys import Journey, Stage, Step, journey
from touchflow.models import (
    Broadcast,
    BroadcastStatus,
    CustomerIn,
    Delivery,
    DeliveryStatus,
    Engagement,
    EventIn,
    JourneyEntry,
    JourneyStatus,
    utcnow,
)
from touchflow.storage import Store
from touchflow.storage.base import insert_ignore
from touchflow.testing import registry_of


@journey(starts_on="win_back_started", goals=("order_placed",), ends_on=("unsubscribed",))
class Winback(Journey):
    """Bring lapsed customers back: an offer, picks for them, a last chance."""

    win_offer = Step(via=("email",), stage=Stage.AWARENESS, experiment="subject_line")
    product_picks = Step(via=("web_push", "email"), stage=Stage.CONSIDERATION, experiment="picks_layout")
    last_chance = Step(via=("zalo_zns", "email"), stage=Stage.PURCHASE)

    async def plan(self, trigger: Any) -> None:
        for step in (self.win_offer, self.product_picks, self.last_chance):
            await self.send(step)


REGISTRY = registry_of(Winback, builtins=True)
FEATURED = "c203"  # variant b of win_offer, opened and clicked it, ordered two hours later


@dataclass(frozen=True)
class Seeded:
    start: datetime  # when the first message went out


def _ids(start: int, stop: int) -> list[str]:
    return [f"c{n:03d}" for n in range(start, stop)]


def seed(store: Store, now: datetime | None = None) -> Seeded:
    now = now or utcnow()
    t0 = now - timedelta(days=10)
    everyone = _ids(0, 400)
    # Who does what: a = c000-c199, b = c200-c399.
    step1_buyers = _ids(0, 20) + _ids(200, 250)  # a 20, b 50
    step1_exits = _ids(20, 35) + _ids(250, 265)  # 30
    step2 = [c for c in everyone if c not in step1_buyers and c not in step1_exits]  # 300
    step2_buyers = step2[:12] + [c for c in step2 if c >= "c200"][:15]  # a 12, b 15
    step3 = [c for c in step2 if c not in step2_buyers][:250]
    step2_dropped = [c for c in step2 if c not in step2_buyers and c not in step3]  # 23 exit
    step3_buyers = step3[:25]
    broadcast_to = step3_buyers + step3[25:50]
    late = step3[-1]

    def hours(h: float) -> datetime:
        return t0 + timedelta(hours=h)

    def variant(customer: str) -> str:
        return "a" if customer < "c200" else "b"

    entries = []
    for n, customer in enumerate(everyone):
        status, ended, ended_by = JourneyStatus.ACTIVE, None, None
        if customer in step1_buyers:
            status, ended, ended_by = JourneyStatus.CONVERTED, hours(2), "order_placed"
        elif customer in step1_exits:
            status, ended, ended_by = JourneyStatus.EXITED, hours(3), "unsubscribed"
        elif customer in step2_buyers:
            status, ended, ended_by = JourneyStatus.CONVERTED, hours(26), "order_placed"
        elif customer in step2_dropped:
            status, ended, ended_by = JourneyStatus.EXITED, hours(30), "unsubscribed"
        elif customer in step3_buyers:
            status, ended, ended_by = JourneyStatus.CONVERTED, hours(50), "order_placed"
        entry = JourneyEntry(
            run_id=f"run-{n}",
            workflow_id=f"winback:{customer}",
            journey="winback",
            customer_id=customer,
            entry_key=None,
            status=status,
            entered_at=hours(-1),
            ended_at=ended,
            ended_by=ended_by,
        )
        entries.append(entry.model_dump(exclude={"id"}))

    deliveries: list[dict[str, Any]] = []

    def deliver(
        journey_name: str,
        step: str,
        customer: str,
        at: datetime,
        *,
        stage: Stage,
        channel: str | None,
        status: DeliveryStatus = DeliveryStatus.SENT,
        error: str | None = None,
        experiment_variant: str | None = None,
    ) -> None:
        sent = status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
        row = Delivery(
            key=f"{journey_name}:{customer}:{step}",
            journey=journey_name,
            step=step,
            customer_id=customer,
            workflow_id=f"{journey_name}:{customer}",
            stage=stage.value,
            variant=experiment_variant,
            channel=channel,
            status=status,
            error=error,
            created_at=at,
            sent_at=at if sent else None,
            delivered_at=at + timedelta(minutes=1) if status == DeliveryStatus.DELIVERED else None,
            updated_at=at,
        )
        deliveries.append(row.model_dump(exclude={"id"}))

    for customer in everyone:
        deliver(
            "winback",
            "win_offer",
            customer,
            hours(0),
            stage=Stage.AWARENESS,
            channel="email",
            experiment_variant=variant(customer),
        )
    step2_a = [c for c in step2 if c < "c200"]
    step2_b = [c for c in step2 if c >= "c200"]
    # 120 sent per variant; the rest (a 45, b 15) skipped or failed: a reached 165, b 135.
    sent2 = step2_a[:120] + step2_b[:120]
    unsent2 = [c for c in step2 if c not in sent2]
    for n, customer in enumerate(sent2):
        deliver(
            "winback",
            "product_picks",
            customer,
            hours(24),
            stage=Stage.CONSIDERATION,
            channel="web_push" if n % 6 else "email",
            experiment_variant=variant(customer),
        )
    for n, customer in enumerate(unsent2):
        skipped = n < 40
        deliver(
            "winback",
            "product_picks",
            customer,
            hours(24),
            stage=Stage.CONSIDERATION,
            channel=None,
            status=DeliveryStatus.SKIPPED if skipped else DeliveryStatus.FAILED,
            error="no consent for marketing" if skipped else "email: 550 mailbox unavailable",
            experiment_variant=variant(customer),
        )
    for n, customer in enumerate(step3):
        zalo = n < 150
        deliver(
            "winback",
            "last_chance",
            customer,
            hours(48),
            stage=Stage.PURCHASE,
            channel="zalo_zns" if zalo else "email",
            status=DeliveryStatus.DELIVERED if zalo else DeliveryStatus.SENT,
        )
    for customer in broadcast_to:
        deliver(
            "broadcast:december",
            "December newsletter",
            customer,
            hours(96),
            stage=Stage.RETENTION,
            channel="email",
        )

    with store.engine.begin() as conn:
        insert_ignore(conn, JourneyEntry, entries)
        insert_ignore(conn, Delivery, deliveries)
    ids = store.deliveries.claim_many(deliveries)

    def engage(step: str, customers: list[str], kind: str, at: datetime) -> list[dict[str, Any]]:
        return [
            {"delivery_id": ids[f"winback:{c}:{step}"].id, "kind": kind, "url": None, "at": at}
            for c in customers
        ]

    a1, b1 = _ids(0, 200), _ids(200, 400)
    engagements = [
        *engage("win_offer", a1[:100] + b1[:120], "open", hours(1)),
        *engage("win_offer", a1[:40] + b1[:60], "click", hours(1)),
        *engage("product_picks", step2_a[:45] + step2_b[:45], "open", hours(25)),
        *engage("product_picks", step2_a[:15] + step2_b[:15], "click", hours(25)),
        *engage("last_chance", step3[:60], "open", hours(49)),
        *engage("last_chance", step3[:25], "click", hours(49)),
    ]
    with store.engine.begin() as conn:
        insert_ignore(conn, Engagement, engagements)

    store.broadcasts.create(
        Broadcast(
            id="december",
            name="December newsletter",
            audience={"customer_ids": broadcast_to},
            via=["email"],
            content={"email": {"subject": "December", "text": "Hello"}},
            status=BroadcastStatus.COMPLETED,
            total=len(broadcast_to),
            created_at=hours(95),
            updated_at=hours(96),
        )
    )

    def order(customer: str, at: datetime, total: Any, n: int) -> EventIn:
        return EventIn(
            id=f"order-{customer}-{n}",
            customer_id=customer,
            name="order_placed",
            properties={"order_id": f"o-{customer}-{n}", "total": total},
            timestamp=at,
        )

    store.customers.upsert(
        CustomerIn(id=FEATURED, email="c203@example.com", consents={"email.marketing": True})
    )
    events = [
        *(order(c, hours(2), 50, 1) for c in step1_buyers),
        *(order(c, hours(26), "80.00", 1) for c in step2_buyers),  # a total sent as text still counts
        *(order(c, hours(50), 100, 1) for c in step3_buyers),
        *(order(c, hours(97), 40, 2) for c in broadcast_to[:5]),
        order(late, hours(48 + 6 * 24), 999, 1),
    ]
    store.events.ingest(events, relayed_names=())
    return Seeded(start=t0)
