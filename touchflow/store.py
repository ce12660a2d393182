"""The store: every read and write touchflow makes to its database, behind one small class.

The API, the relay and the activities share it; it is synchronous (SQLAlchemy sessions), so async callers run
it in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from touchflow.db import session_scope
from touchflow.models import (
    Coupon,
    CouponRedemption,
    Customer,
    CustomerIn,
    Delivery,
    DeliveryStatus,
    Event,
    EventIn,
    IngestStatus,
    JourneyEntry,
    JourneyStatus,
    OutboxEntry,
    utcnow,
)

# An `order_placed` whose properties carry `coupon_code` redeems that coupon, once; an accepted redemption
# adds the derived event `coupon_redeemed` (keyed by the order the coupon was issued for) so the journey that
# issued it ends.
REDEEMING_EVENT = "order_placed"
COUPON_PROPERTY = "coupon_code"
REDEEMED_EVENT = "coupon_redeemed"
# Codes without look-alikes (0/O, 1/I/L): read aloud or typed from a phone without mistakes.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_coupon_code() -> str:
    """`TF-XXXX-XXXX`: 40 bits of randomness from `secrets`, unique by the table's constraint."""
    body = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"TF-{body[:4]}-{body[4:]}"


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


@dataclass(frozen=True)
class ClaimedEvent:
    """An outbox entry leased to one relay, with the event it carries."""

    outbox_id: int
    attempts: int
    event: Event


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- writes that must not duplicate ---------------------------------------------------------------------

    def _insert_ignore(
        self, conn: Connection, model: Any, rows: Sequence[dict[str, Any]], returning: Any = None
    ) -> set[Any]:
        """INSERT … ON CONFLICT DO NOTHING in one round trip; returns the `returning` values of new rows."""
        if not rows:
            return set()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(_table(model)).on_conflict_do_nothing()
        if returning is None:
            conn.execute(stmt, list(rows))
            return set()
        result = conn.execute(stmt.returning(returning, sort_by_parameter_order=True), list(rows))
        return set(result.scalars().all())

    # -- customers ------------------------------------------------------------------------------------------

    def upsert_customer(self, data: CustomerIn) -> tuple[Customer, bool]:
        """Create or update a profile; fields not sent keep their value, attributes merge key by key."""
        changes = data.model_dump(exclude_unset=True, exclude={"id"})
        with session_scope(self.engine) as session:
            customer = session.get(Customer, data.id, with_for_update=True)
            created = customer is None
            if customer is None:
                customer = Customer(id=data.id)
            for field, value in changes.items():
                if field in ("attributes", "consents") and value is not None:
                    setattr(customer, field, {**getattr(customer, field), **value})
                else:
                    setattr(customer, field, value)
            customer.updated_at = utcnow()
            session.add(customer)
        return customer, created

    def get_customer(self, customer_id: str) -> Customer | None:
        with self.session() as session:
            return session.get(Customer, customer_id)

    def customer_events(self, customer_id: str, limit: int = 50) -> list[Event]:
        with self.session() as session:
            stmt = (
                select(Event)
                .where(col(Event.customer_id) == customer_id)
                .order_by(col(Event.occurred_at).desc())
                .limit(limit)
            )
            return list(session.scalars(stmt))

    def customer_deliveries(self, customer_id: str, limit: int = 50) -> list[Delivery]:
        with self.session() as session:
            stmt = (
                select(Delivery)
                .where(col(Delivery.customer_id) == customer_id)
                .order_by(col(Delivery.created_at).desc(), col(Delivery.id).desc())
                .limit(limit)
            )
            return list(session.scalars(stmt))

    # -- events and the outbox ------------------------------------------------------------------------------

    def ingest_events(self, events: Sequence[EventIn], relayed_names: Iterable[str]) -> list[IngestStatus]:
        """Store events once each, create bare profiles for unknown customers, queue the relevant ones.

        One transaction: an event is stored together with its outbox entry or not at all, so an accepted
        event always reaches its journeys (store-then-relay). A repeated `id` is a duplicate and adds nothing.
        """
        now = utcnow()
        relayed = set(relayed_names)
        rows = [
            {
                "id": event.id,
                "customer_id": event.customer_id,
                "name": event.name,
                "properties": event.properties,
                "occurred_at": event.timestamp or now,
                "received_at": now,
            }
            for event in events
        ]
        customers = {
            event.customer_id: {
                "id": event.customer_id,
                "attributes": {},
                "consents": {},
                "created_at": now,
                "updated_at": now,
            }
            for event in events
        }
        with self.engine.begin() as conn:
            self._insert_ignore(conn, Customer, list(customers.values()))
            inserted = self._insert_ignore(conn, Event, rows, returning=_table(Event).c.id)
            derived = self._redeem_coupons(conn, [r for r in rows if r["id"] in inserted], now)
            if derived:
                inserted |= self._insert_ignore(conn, Event, derived, returning=_table(Event).c.id)
            outbox = [
                {"event_id": row["id"], "attempts": 0, "available_at": now}
                for row in [*rows, *derived]
                if row["id"] in inserted and row["name"] in relayed
            ]
            self._insert_ignore(conn, OutboxEntry, outbox)
        statuses: list[IngestStatus] = []
        seen: set[str] = set()
        for event in events:
            new = event.id in inserted and event.id not in seen
            statuses.append(IngestStatus.ACCEPTED if new else IngestStatus.DUPLICATE)
            seen.add(event.id)
        return statuses

    def _redeem_coupons(
        self, conn: Connection, rows: Sequence[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Record every coupon use of these new events; returns the `coupon_redeemed` events to add."""
        coupons = _table(Coupon)
        derived: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in rows:
            code = row["properties"].get(COUPON_PROPERTY)
            if row["name"] != REDEEMING_EVENT or not isinstance(code, str) or row["id"] in seen:
                continue
            seen.add(row["id"])
            code = code.strip().upper()
            order_id = row["properties"].get("order_id")
            query = select(coupons).where(coupons.c.code == code)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            coupon = conn.execute(query).one_or_none()
            reason = None
            if coupon is None:
                reason = "unknown code"
            elif coupon.customer_id != row["customer_id"]:
                reason = "issued to another customer"
            elif coupon.redeemed_at is not None:
                reason = "already redeemed"
            elif coupon.expires_at < row["occurred_at"]:
                reason = "expired"
            else:
                # The `redeemed_at IS NULL` re-check makes two concurrent redemptions apply once.
                applied = conn.execute(
                    update(coupons)
                    .where(coupons.c.id == coupon.id, coupons.c.redeemed_at.is_(None))
                    .values(
                        redeemed_at=now,
                        redeemed_order_id=None if order_id is None else str(order_id)[:128],
                        redeemed_event_id=row["id"],
                    )
                ).rowcount
                if applied != 1:
                    reason = "already redeemed"
            self._insert_ignore(
                conn,
                CouponRedemption,
                [
                    {
                        "event_id": row["id"],
                        "code": code[:32],
                        "coupon_id": coupon.id if coupon is not None else None,
                        "customer_id": row["customer_id"],
                        "order_id": None if order_id is None else str(order_id)[:128],
                        "accepted": reason is None,
                        "reason": reason,
                        "at": now,
                    }
                ],
            )
            if reason is None and coupon is not None:
                derived.append(
                    {
                        "id": f"{REDEEMED_EVENT}:{coupon.id}",
                        "customer_id": row["customer_id"],
                        "name": REDEEMED_EVENT,
                        "properties": {
                            "coupon_id": coupon.id,
                            "journey": coupon.journey,
                            # The entry key of the run that issued it (the post-purchase order id).
                            "order_id": coupon.entry_key,
                            "redeemed_order_id": order_id,
                        },
                        "occurred_at": row["occurred_at"],
                        "received_at": now,
                    }
                )
        return derived

    def claim_outbox(self, limit: int, lease: timedelta) -> list[ClaimedEvent]:
        """Lease up to `limit` due entries to the caller; another relay skips them until the lease ends."""
        now = utcnow()
        outbox = _table(OutboxEntry)
        with self.engine.begin() as conn:
            due = select(outbox.c.id).where(outbox.c.available_at <= now).order_by(outbox.c.id)
            due = due.limit(limit)
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.scalars(due))
            if not ids:
                return []
            # The re-check of available_at makes a lease race-free: a second relay finds it moved.
            claimed = conn.execute(
                update(outbox)
                .where(and_(outbox.c.id.in_(ids), outbox.c.available_at <= now))
                .values(available_at=now + lease, attempts=outbox.c.attempts + 1)
                .returning(outbox.c.id, outbox.c.event_id, outbox.c.attempts)
            ).all()
            if not claimed:
                return []
            event_ids = [row.event_id for row in claimed]
            events = {
                row.id: Event.model_validate(row._mapping)
                for row in conn.execute(select(_table(Event)).where(_table(Event).c.id.in_(event_ids)))
            }
        return [
            ClaimedEvent(outbox_id=row.id, attempts=row.attempts, event=events[row.event_id])
            for row in sorted(claimed, key=lambda r: r.id)
            if row.event_id in events
        ]

    def finish_outbox(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(_table(OutboxEntry)).where(_table(OutboxEntry).c.id.in_(outbox_ids)))

    def retry_outbox(self, outbox_id: int, error: str, delay: timedelta) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(_table(OutboxEntry))
                .where(_table(OutboxEntry).c.id == outbox_id)
                .values(available_at=utcnow() + delay, last_error=error[:500])
            )

    def outbox_size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(_table(OutboxEntry))) or 0)

    def event_since(
        self,
        customer_id: str,
        names: Sequence[str],
        since: datetime,
        match: dict[str, Any] | None = None,
    ) -> Event | None:
        """The first event of these names since `since` (optionally with matching properties)."""
        if not names:
            return None
        with self.session() as session:
            stmt = (
                select(Event)
                .where(
                    col(Event.customer_id) == customer_id,
                    col(Event.name).in_(names),
                    or_(col(Event.occurred_at) >= since, col(Event.received_at) >= since),
                )
                .order_by(col(Event.occurred_at))
            )
            for event in session.scalars(stmt):
                if not match or all(event.properties.get(k) == v for k, v in match.items()):
                    return event
        return None

    def get_event(self, event_id: str) -> Event | None:
        with self.session() as session:
            return session.get(Event, event_id)

    # -- journeys -------------------------------------------------------------------------------------------

    def enter_journey(
        self,
        *,
        run_id: str,
        workflow_id: str,
        journey: str,
        customer_id: str,
        entry_key: str | None,
    ) -> tuple[JourneyEntry, list[JourneyEntry]]:
        """Record that a run began; returns it with the earlier runs of the same workflow id.

        Idempotent by `run_id`: a retried activity finds its own row.
        """
        with session_scope(self.engine) as session:
            earlier = list(
                session.scalars(
                    select(JourneyEntry)
                    .where(
                        col(JourneyEntry.workflow_id) == workflow_id,
                        col(JourneyEntry.run_id) != run_id,
                    )
                    .order_by(col(JourneyEntry.entered_at).desc())
                )
            )
            entry = session.scalars(
                select(JourneyEntry).where(col(JourneyEntry.run_id) == run_id)
            ).one_or_none()
            if entry is None:
                entry = JourneyEntry(
                    run_id=run_id,
                    workflow_id=workflow_id,
                    journey=journey,
                    customer_id=customer_id,
                    entry_key=entry_key,
                )
                session.add(entry)
        return entry, earlier

    def leave_journey(self, run_id: str, status: JourneyStatus, ended_by: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(_table(JourneyEntry))
                .where(_table(JourneyEntry).c.run_id == run_id)
                .values(status=status, ended_at=utcnow(), ended_by=ended_by)
            )

    def active_entries(self, journey: str, customer_id: str) -> list[JourneyEntry]:
        with self.session() as session:
            stmt = select(JourneyEntry).where(
                col(JourneyEntry.journey) == journey,
                col(JourneyEntry.customer_id) == customer_id,
                col(JourneyEntry.status) == JourneyStatus.ACTIVE,
            )
            return list(session.scalars(stmt))

    # -- deliveries -----------------------------------------------------------------------------------------

    def claim_delivery(self, delivery: Delivery) -> Delivery:
        """Insert the delivery row for its business key, or return the row an earlier attempt made."""
        with self.engine.begin() as conn:
            row = delivery.model_dump(exclude={"id"})
            self._insert_ignore(conn, Delivery, [row])
        with self.session() as session:
            stored = session.scalars(select(Delivery).where(col(Delivery.key) == delivery.key)).one()
        return stored

    def update_delivery(self, delivery_id: int, **values: Any) -> Delivery:
        with session_scope(self.engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                raise LookupError(f"delivery {delivery_id} not found")
            for field, value in values.items():
                setattr(delivery, field, value)
            delivery.updated_at = utcnow()
            session.add(delivery)
        return delivery

    def deliveries_with_status(self, status: DeliveryStatus) -> list[Delivery]:
        with self.session() as session:
            return list(session.scalars(select(Delivery).where(col(Delivery.status) == status)))

    # -- coupons --------------------------------------------------------------------------------------------

    def issue_coupon(
        self,
        *,
        key: str,
        customer_id: str,
        journey: str,
        entry_key: str | None,
        value: float,
        unit: str,
        expires_at: datetime,
    ) -> Coupon:
        """A new unique coupon for this business key, or the one an earlier call made for it."""
        for _ in range(5):
            row = {
                "key": key,
                "code": new_coupon_code(),
                "customer_id": customer_id,
                "journey": journey,
                "entry_key": entry_key,
                "value": value,
                "unit": unit,
                "expires_at": expires_at,
                "created_at": utcnow(),
            }
            try:
                with self.engine.begin() as conn:
                    conn.execute(_table(Coupon).insert(), [row])
            except IntegrityError:
                pass  # this key was issued already (found below), or the code collided (try again)
            with self.session() as session:
                found = session.scalars(select(Coupon).where(col(Coupon.key) == key)).one_or_none()
            if found is not None:
                return found
        raise RuntimeError("could not draw a unique coupon code in 5 tries")

    def get_coupon(self, coupon_id: int) -> Coupon | None:
        with self.session() as session:
            return session.get(Coupon, coupon_id)

    def coupon_by_code(self, code: str) -> Coupon | None:
        with self.session() as session:
            stmt = select(Coupon).where(col(Coupon.code) == code.strip().upper())
            return session.scalars(stmt).one_or_none()

    def customer_coupons(self, customer_id: str) -> list[Coupon]:
        with self.session() as session:
            stmt = select(Coupon).where(col(Coupon.customer_id) == customer_id).order_by(col(Coupon.id))
            return list(session.scalars(stmt))

    def coupon_redemptions(self, code: str) -> list[CouponRedemption]:
        with self.session() as session:
            stmt = (
                select(CouponRedemption)
                .where(col(CouponRedemption.code) == code.strip().upper())
                .order_by(col(CouponRedemption.id))
            )
            return list(session.scalars(stmt))
