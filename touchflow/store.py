"""The store: every read and write touchflow makes to its database, behind one small class.

The API, the relay and the activities share it; it is synchronous (SQLAlchemy sessions), so async callers run
it in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    ColumnElement,
    Engine,
    Select,
    String,
    Table,
    and_,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from touchflow.db import read_modify_write, session_scope
from touchflow.encoding import b64url_decode, b64url_encode
from touchflow.errors import InvalidInput
from touchflow.models import (
    Coupon,
    CouponRedemption,
    Customer,
    CustomerIn,
    Delivery,
    DeliveryStatus,
    Engagement,
    Event,
    EventIn,
    InboxMessage,
    Ingested,
    IngestStatus,
    JourneyEntry,
    JourneyStatus,
    OutboxEntry,
    PushSubscription,
    PushSubscriptionIn,
    RateWindow,
    RelayLease,
    Suppression,
    ZaloToken,
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
    """`TF-7KQ2-M9XD`-shaped: 40 bits of randomness from `secrets`, unique by the table's constraint."""
    body = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"TF-{body[:4]}-{body[4:]}"


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _address_hash(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _bare_customer(customer_id: str, now: datetime) -> dict[str, Any]:
    """The row a profile starts as, its id and nothing else: what an upsert inserts if it is absent."""
    return {"id": customer_id, "attributes": {}, "consents": {}, "created_at": now, "updated_at": now}


def _with_consents(conn: Connection, changes: dict[str, bool]) -> ColumnElement[Any]:
    """The stored consents with `changes` merged in, computed by the database in the UPDATE itself, so the
    merge sees the row as it is (no read before the write that a concurrent change could overtake)."""
    consents = _table(Customer).c.consents
    if conn.dialect.name == "postgresql":
        return consents.op("||", return_type=JSONB())(literal(changes, JSONB()))
    # RFC 7396 merge patch: key by key, as `{**stored, **changes}`, since every value is a bool.
    return func.json_patch(consents, literal(changes, JSON()), type_=JSON())


# What stands in for a customer id once the customer is erased.
ERASED = "erased"
# Tables whose rows belong to one person and go with them on erasure.
PERSONAL_TABLES: tuple[Any, ...] = (Event, InboxMessage, PushSubscription, CouponRedemption, Coupon)

# The event that withdraws consent; the store applies it as it stores it.
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True)
class ClaimedEvent:
    """An outbox entry leased to one relay, with the event it carries."""

    outbox_id: int
    attempts: int
    event: Event


@dataclass(frozen=True)
class RateCount:
    """A fixed rate window after a request was counted in it (or refused, `admitted` False)."""

    admitted: bool
    count: int
    resets_at: float  # when the window ends, in seconds since the epoch


@dataclass(frozen=True)
class InboxSlice:
    """One page of a customer's inbox, newest first; `next_cursor` opens the older page after it."""

    messages: list[InboxMessage]
    next_cursor: str | None


InboxMark = Literal["seen", "read", "archived"]
INBOX_PAGE_MAX = 100
# Browsers and devices one customer may have subscribed; one step pushes to each of them.
PUSH_SUBSCRIPTIONS_PER_CUSTOMER = 20


def _inbox_cursor(message: InboxMessage) -> str:
    return b64url_encode(f"{message.created_at.isoformat()}|{message.id}".encode())


def _parse_inbox_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created, _, ident = b64url_decode(cursor).decode().partition("|")
        return datetime.fromisoformat(created), int(ident)
    except ValueError:  # UnicodeDecodeError is one too
        raise InvalidInput("cursor: not a cursor this API returned; pass `next_cursor` as it came") from None


def _unread_counts(customer_ids: Collection[str]) -> Select[str, int]:
    return (
        select(col(InboxMessage.customer_id), func.count())
        .where(
            col(InboxMessage.customer_id).in_(sorted(set(customer_ids))),
            col(InboxMessage.read_at).is_(None),
            col(InboxMessage.archived_at).is_(None),
        )
        .group_by(col(InboxMessage.customer_id))
    )


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
        result = conn.execute(stmt.returning(returning), list(rows))
        return set(result.scalars().all())

    # -- customers ------------------------------------------------------------------------------------------

    def upsert_customer(self, data: CustomerIn) -> tuple[Customer, bool]:
        """Create or update a profile; fields not sent keep their value, attributes merge key by key.

        Safe side by side: the bare profile is inserted if absent (so two creations of one new customer do
        not collide), then the row is read under lock (`read_modify_write`, `FOR UPDATE`) and the merge
        written, so no concurrent change to it is lost.
        """
        changes = data.model_dump(exclude_unset=True, exclude={"id"})
        now = utcnow()
        table = _table(Customer)
        with read_modify_write(self.engine) as conn:
            created = bool(
                self._insert_ignore(conn, Customer, [_bare_customer(data.id, now)], returning=table.c.id)
            )
            stored = conn.execute(select(table).where(table.c.id == data.id).with_for_update()).one()
            values: dict[str, Any] = {"updated_at": now}
            for field, value in changes.items():
                if field in ("attributes", "consents"):
                    # merged key by key; null clears them
                    values[field] = {} if value is None else {**getattr(stored, field), **value}
                else:
                    values[field] = value
            row = conn.execute(
                update(table).where(table.c.id == data.id).values(values).returning(*table.c)
            ).one()
        return Customer.model_validate(row._mapping), created

    def set_consents(self, customer_id: str, changes: dict[str, bool]) -> Customer | None:
        """Merge consent changes into a profile (unsubscribe, provider signals); None if there is none.

        One statement (`_with_consents`), so a concurrent change to other consents is never lost.
        """
        table = _table(Customer)
        with self.engine.begin() as conn:
            row = conn.execute(
                update(table)
                .where(table.c.id == customer_id)
                .values(consents=_with_consents(conn, changes), updated_at=utcnow())
                .returning(*table.c)
            ).one_or_none()
        return None if row is None else Customer.model_validate(row._mapping)

    def erase_customer(self, customer_id: str) -> dict[str, int]:
        """Delete a customer's personal data; keep their deliveries and journey entries as anonymous counts.

        Events (and any not yet relayed), inbox messages and device subscriptions go; deliveries and journey
        entries lose every link to the person (ids, keys, provider ids, errors, attempt details) but keep the
        journey, step, channel, stage, status and times that the funnels count. Returns what was removed.
        """
        removed: dict[str, int] = {}
        with self.engine.begin() as conn:
            # Lease rows before outbox rows, as the relay takes them (`claim_outbox`).
            leases = _table(RelayLease)
            conn.execute(delete(leases).where(leases.c.customer_id == customer_id))
            outbox = _table(OutboxEntry)
            queued = delete(outbox).where(outbox.c.customer_id == customer_id)
            removed["outbox"] = conn.execute(queued).rowcount
            deliveries = _table(Delivery)
            engagements = _table(Engagement)
            theirs = select(deliveries.c.id).where(deliveries.c.customer_id == customer_id)
            removed["engagements"] = conn.execute(
                delete(engagements).where(engagements.c.delivery_id.in_(theirs))
            ).rowcount
            for model in PERSONAL_TABLES:
                table = _table(model)
                removed[table.name] = conn.execute(
                    delete(table).where(table.c.customer_id == customer_id)
                ).rowcount
            removed["deliveries anonymised"] = conn.execute(
                update(deliveries)
                .where(deliveries.c.customer_id == customer_id)
                .values(
                    customer_id=ERASED,
                    workflow_id=ERASED,
                    key=literal(f"{ERASED}:") + cast(deliveries.c.id, String),
                    provider_id=None,
                    error=None,
                    attempts=[],
                )
            ).rowcount
            entries = _table(JourneyEntry)
            removed["journey entries anonymised"] = conn.execute(
                update(entries)
                .where(entries.c.customer_id == customer_id)
                .values(
                    customer_id=ERASED,
                    workflow_id=literal(f"{ERASED}:") + cast(entries.c.id, String),
                    entry_key=None,
                    trigger_event_id=None,
                )
            ).rowcount
            customers = _table(Customer)
            removed["customers"] = conn.execute(
                delete(customers).where(customers.c.id == customer_id)
            ).rowcount
        return removed

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

    def ingest_events(self, events: Sequence[EventIn], relayed_names: Iterable[str]) -> list[Ingested]:
        """Store events once each, create bare profiles for unknown customers, queue the relevant ones.

        One transaction: an event is stored together with its outbox entry or not at all, so an accepted
        event always reaches its journeys (store-then-relay). A repeated `id` adds nothing: a duplicate
        when it repeats the stored event, a conflict when the stored one is another (`EventIn.conflict_with`).
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
            # Most events are of known customers: insert (or ignore) only the profiles not found.
            known = _table(Customer).c.id
            found = set(conn.scalars(select(known).where(known.in_(list(customers)))))
            # In id order, as the unsubscribes below: two batches locking the same customers never deadlock.
            new_customers = [
                row for customer_id, row in sorted(customers.items()) if customer_id not in found
            ]
            self._insert_ignore(conn, Customer, new_customers)
            inserted = self._insert_ignore(conn, Event, rows, returning=_table(Event).c.id)
            derived = self._redeem_coupons(conn, [r for r in rows if r["id"] in inserted], now)
            if derived:
                inserted |= self._insert_ignore(conn, Event, derived, returning=_table(Event).c.id)
            outbox = [
                {"event_id": row["id"], "customer_id": row["customer_id"], "attempts": 0, "available_at": now}
                for row in [*rows, *derived]
                if row["id"] in inserted and row["name"] in relayed
            ]
            self._insert_ignore(conn, OutboxEntry, outbox)
            for event in sorted(events, key=lambda event: event.customer_id):  # id order, as above
                if event.name == UNSUBSCRIBED and event.id in inserted:
                    self._apply_unsubscribe(conn, event)
            # A repeated id (of a stored event, or of an earlier item) is judged against the stored event.
            counts = Counter(event.id for event in events)
            stored = self._events_by_id(conn, [i for i, n in counts.items() if n > 1 or i not in inserted])
        results: list[Ingested] = []
        seen: set[str] = set()
        for event in events:
            if event.id in inserted and event.id not in seen:
                results.append(Ingested(IngestStatus.ACCEPTED))
            else:
                row = stored.get(event.id)
                why = None if row is None else event.conflict_with(row.customer_id, row.name, row.properties)
                results.append(
                    Ingested(IngestStatus.CONFLICT, why) if why else Ingested(IngestStatus.DUPLICATE)
                )
            seen.add(event.id)
        return results

    def _events_by_id(self, conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
        if not ids:
            return {}
        table = _table(Event)
        query = select(table.c.id, table.c.customer_id, table.c.name, table.c.properties)
        return {row.id: row for row in conn.execute(query.where(table.c.id.in_(ids)))}

    def _apply_unsubscribe(self, conn: Connection, event: EventIn) -> None:
        """An `unsubscribed` event turns a consent off: `{"channel": "email"}` → `email.marketing`,
        `{"topic": "all"}` → every message; no properties → all marketing."""
        channel = event.properties.get("channel")
        topic = str(event.properties.get("topic") or "marketing")
        key = "all" if topic == "all" else (f"{channel}.{topic}" if channel else topic)
        table = _table(Customer)
        conn.execute(
            update(table)
            .where(table.c.id == event.customer_id)
            .values(consents=_with_consents(conn, {key: False}), updated_at=utcnow())
        )

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
            elif coupon.expires_at < now:
                # Judged when the order is received: its own `timestamp` is the client's word, and a
                # backdated one must not revive an expired code.
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

    def claim_outbox(self, limit: int, lease: timedelta, holder: str) -> list[ClaimedEvent]:
        """Lease whole customers to the relay `holder`: up to `limit` entries, oldest first, of customers that
        no other relay holds and whose oldest entry is due; the caller routes each customer's in order.

        A customer is taken with a row in `relay_leases` (insert, or take over a lapsed lease), so one
        customer's events are never relayed by two relays at once. An entry waiting out its back-off holds
        back its customer's later entries (they would overtake it). One transaction, `BEGIN IMMEDIATE` on
        SQLite; on PostgreSQL the lease upsert decides between relays racing for a customer, in customer id
        order (no deadlock). Every transaction here touching both tables takes lease rows first.
        """
        now = utcnow()
        outbox, leases = _table(OutboxEntry), _table(RelayLease)
        later = outbox.alias("later")
        with read_modify_write(self.engine) as conn:
            held = (
                select(leases.c.customer_id)
                .where(leases.c.customer_id == outbox.c.customer_id, leases.c.until > now)
                .exists()
            )
            backing_off = (
                select(later.c.id)
                .where(later.c.customer_id == outbox.c.customer_id, later.c.available_at > now)
                .exists()
            )
            due = (
                select(outbox.c.customer_id)
                .where(outbox.c.available_at <= now, ~held, ~backing_off)
                .order_by(outbox.c.id)
                .limit(limit)
            )
            candidates = sorted(set(conn.scalars(due)))
            if not candidates:
                return []
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            take = dialect.insert(leases).values(
                [{"customer_id": c, "holder": holder, "until": now + lease} for c in candidates]
            )
            take = take.on_conflict_do_update(
                index_elements=[leases.c.customer_id],
                set_={"holder": take.excluded.holder, "until": take.excluded.until},
                where=or_(leases.c.until <= now, leases.c.holder == holder),
            ).returning(leases.c.customer_id)
            won = set(conn.scalars(take))
            if not won:
                return []
            # Read again under the leases: what is there now is ours alone, oldest first.
            rows = conn.execute(
                select(outbox.c.id, outbox.c.customer_id, outbox.c.available_at)
                .where(outbox.c.customer_id.in_(won))
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
            heads: dict[str, bool] = {}
            ids = []
            for row in rows:
                # A customer whose oldest entry went into back-off meanwhile (another relay's retry) waits.
                if heads.setdefault(row.customer_id, row.available_at <= now):
                    ids.append(row.id)
            claimed: Sequence[Any] = ()
            events: dict[str, Event] = {}
            if ids:
                claimed = conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(attempts=outbox.c.attempts + 1)
                    .returning(outbox.c.id, outbox.c.event_id, outbox.c.attempts)
                ).all()
                event_ids = [row.event_id for row in claimed]
                events = {
                    row.id: Event.model_validate(row._mapping)
                    for row in conn.execute(select(_table(Event)).where(_table(Event).c.id.in_(event_ids)))
                }
                orphans = [row.id for row in claimed if row.event_id not in events]
                if orphans:  # an entry whose event is gone has nothing to relay
                    conn.execute(delete(outbox).where(outbox.c.id.in_(orphans)))
            # Customers won but with nothing to relay now (emptied or backing off meanwhile, or past `limit`).
            idle = won - {event.customer_id for event in events.values()}
            if idle:
                conn.execute(delete(leases).where(leases.c.customer_id.in_(idle), leases.c.holder == holder))
        return [
            ClaimedEvent(outbox_id=row.id, attempts=row.attempts, event=events[row.event_id])
            for row in sorted(claimed, key=lambda r: r.id)
            if row.event_id in events
        ]

    def extend_leases(self, holder: str, customers: Sequence[str], lease: timedelta) -> set[str]:
        """Renew `holder`'s leases of `customers` for `lease` from now; returns the customers it still holds
        (a lease that lapsed and was taken over is not renewed)."""
        if not customers:
            return set()
        leases = _table(RelayLease)
        with self.engine.begin() as conn:
            renewed = conn.scalars(
                update(leases)
                .where(leases.c.customer_id.in_(list(customers)), leases.c.holder == holder)
                .values(until=utcnow() + lease)
                .returning(leases.c.customer_id)
            )
            return set(renewed)

    def finish_outbox(self, outbox_ids: Sequence[int], holder: str, customers: Iterable[str] = ()) -> None:
        """Delete relayed entries and end `holder`'s leases of `customers` (the pass is over)."""
        customers = list(customers)
        if not outbox_ids and not customers:
            return
        leases = _table(RelayLease)
        with self.engine.begin() as conn:
            if customers:
                conn.execute(
                    delete(leases).where(leases.c.customer_id.in_(customers), leases.c.holder == holder)
                )
            if outbox_ids:
                conn.execute(delete(_table(OutboxEntry)).where(_table(OutboxEntry).c.id.in_(outbox_ids)))

    def retry_outbox(self, outbox_id: int, error: str, delay: timedelta, holder: str) -> None:
        """Put an entry off for `delay`; only the relay holding its customer may (a relay whose lease was
        taken over changes nothing)."""
        outbox, leases = _table(OutboxEntry), _table(RelayLease)
        holds = (
            select(leases.c.customer_id)
            .where(leases.c.customer_id == outbox.c.customer_id, leases.c.holder == holder)
            .exists()
        )
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id, holds)
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
        *,
        after: Event | None = None,
    ) -> Event | None:
        """The first event of these names since `since` (optionally with matching properties).

        With `after` (the event that started a run), that event and older ones of its name do not count.
        """
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
                if after is not None and event.name == after.name and event.received_at <= after.received_at:
                    continue
                if not match or all(event.properties.get(k) == v for k, v in match.items()):
                    return event
        return None

    def existing_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these events are still stored (an erasure deletes a customer's)."""
        if not event_ids:
            return set()
        table = _table(Event)
        with self.engine.connect() as conn:
            return set(conn.scalars(select(table.c.id).where(table.c.id.in_(list(event_ids)))))

    def customer_workflow_ids(self, customer_id: str) -> list[str]:
        """Every journey run the store knows of for a customer (open or closed)."""
        table = _table(JourneyEntry)
        with self.engine.connect() as conn:
            query = select(table.c.workflow_id).where(table.c.customer_id == customer_id).distinct()
            return sorted(conn.scalars(query))

    def get_event(self, event_id: str) -> Event | None:
        with self.session() as session:
            return session.get(Event, event_id)

    # -- rate limits ----------------------------------------------------------------------------------------

    def count_request(
        self, key_id: str, window_seconds: int, now: float, cost: int = 1, limit: int | None = None
    ) -> RateCount:
        """Count `cost` in the key's current fixed window, unless that would take it past `limit`: then
        nothing is counted and `admitted` is False. Every API process shares the windows.

        One conditional `UPDATE` decides, so concurrent requests never count past the limit together.
        """
        window = int(now // window_seconds) * window_seconds
        table = _table(RateWindow)
        this = and_(table.c.key_id == key_id, table.c.window == window)
        with self.engine.begin() as conn:
            opened = self._insert_ignore(
                conn, RateWindow, [{"key_id": key_id, "window": window, "count": 0}], returning=table.c.key_id
            )
            if opened:  # the first request of a new window: forget the old ones
                conn.execute(delete(table).where(table.c.key_id == key_id, table.c.window < window))
            fits = this if limit is None else and_(this, table.c.count + cost <= limit)
            counted = conn.execute(
                update(table).where(fits).values(count=table.c.count + cost).returning(table.c.count)
            ).scalar_one_or_none()
            if counted is not None:
                return RateCount(admitted=True, count=int(counted), resets_at=window + window_seconds)
            refused = conn.execute(select(table.c.count).where(this)).scalar_one()
        return RateCount(admitted=False, count=int(refused), resets_at=window + window_seconds)

    def window_count(self, key_id: str, window_seconds: int, now: float) -> RateCount:
        """What the key's current window holds, counting nothing."""
        window = int(now // window_seconds) * window_seconds
        table = _table(RateWindow)
        with self.engine.connect() as conn:
            this = and_(table.c.key_id == key_id, table.c.window == window)
            count = conn.scalar(select(table.c.count).where(this))
        return RateCount(admitted=True, count=int(count or 0), resets_at=window + window_seconds)

    # -- journeys -------------------------------------------------------------------------------------------

    def enter_journey(
        self,
        *,
        run_id: str,
        workflow_id: str,
        journey: str,
        customer_id: str,
        entry_key: str | None,
        trigger_event_id: str | None = None,
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
                    trigger_event_id=trigger_event_id,
                )
                session.add(entry)
        return entry, earlier

    def runs_started_by(self, event_id: str) -> set[str]:
        """The workflow ids of the runs this event started (open or closed)."""
        table = _table(JourneyEntry)
        with self.engine.connect() as conn:
            return set(conn.scalars(select(table.c.workflow_id).where(table.c.trigger_event_id == event_id)))

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

    def journey_counts(self, journey: str, since: datetime | None = None) -> dict[str, int]:
        """Runs of a journey by status (entered since `since`, when given)."""
        table = _table(JourneyEntry)
        query = select(table.c.status, func.count()).where(table.c.journey == journey)
        if since is not None:
            query = query.where(table.c.entered_at >= since)
        with self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query.group_by(table.c.status))}

    def delivery_counts(
        self, journey: str, since: datetime | None = None
    ) -> list[tuple[str, str, str | None, str | None, int]]:
        """(step, status, channel, variant, count) of a journey's deliveries."""
        table = _table(Delivery)
        columns = (table.c.step, table.c.status, table.c.channel, table.c.variant)
        query = select(*columns, func.count()).where(table.c.journey == journey)
        if since is not None:
            query = query.where(table.c.created_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query.group_by(*columns)).all()
        return [(str(s), str(st), ch, v, int(n)) for s, st, ch, v, n in rows]

    def engagement_counts(self, journey: str, since: datetime | None = None) -> dict[str, tuple[int, int]]:
        """Per step: (deliveries opened, deliveries clicked), each delivery counted once.

        An onsite message read in the inbox counts as opened.
        """
        deliveries, engagements, inbox = _table(Delivery), _table(Engagement), _table(InboxMessage)
        scope = [deliveries.c.journey == journey]
        if since is not None:
            scope.append(deliveries.c.created_at >= since)

        def distinct_per_step(joined: Any, condition: Any) -> dict[str, int]:
            query = (
                select(deliveries.c.step, func.count(func.distinct(deliveries.c.id)))
                .select_from(joined)
                .where(*scope, condition)
                .group_by(deliveries.c.step)
            )
            with self.engine.connect() as conn:
                return {str(step): int(n) for step, n in conn.execute(query)}

        tracked = deliveries.join(engagements, engagements.c.delivery_id == deliveries.c.id)
        opened = distinct_per_step(tracked, engagements.c.kind == "open")
        clicked = distinct_per_step(tracked, engagements.c.kind == "click")
        read = distinct_per_step(
            deliveries.join(inbox, inbox.c.key == deliveries.c.key), inbox.c.read_at.is_not(None)
        )
        steps = set(opened) | set(clicked) | set(read)
        return {s: (opened.get(s, 0) + read.get(s, 0), clicked.get(s, 0)) for s in steps}

    def record_engagement(self, delivery_id: int, kind: str, url: str | None = None) -> bool:
        """Record an open or a click; False when there is no such delivery (erased, or a stale link).

        A delivery is opened once: a pixel fetched again (mail clients and proxies do) adds nothing, by the
        table's unique index on opens. Every click is kept.
        """
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(_table(Delivery).c.id).where(_table(Delivery).c.id == delivery_id)
            ).first()
            if exists is None:
                return False
            row = {"delivery_id": delivery_id, "kind": kind, "url": url, "at": utcnow()}
            self._insert_ignore(conn, Engagement, [row])
        return True

    # -- deliveries -----------------------------------------------------------------------------------------

    def claim_delivery(self, delivery: Delivery) -> Delivery:
        """Insert the delivery row for its business key, or return the row an earlier attempt made."""
        with self.engine.begin() as conn:
            row = delivery.model_dump(exclude={"id"})
            self._insert_ignore(conn, Delivery, [row])
        with self.session() as session:
            stored = session.scalars(select(Delivery).where(col(Delivery.key) == delivery.key)).one()
        return stored

    def start_sending(self, delivery_id: int, lease: timedelta) -> tuple[int | None, bool]:
        """Take the delivery's send lease: (token, interrupted); token None when not taken.

        Not taken: another attempt holds a live lease (it is sending right now). Interrupted: an earlier
        attempt took the lease and never finished (its worker died mid-send): whether that message went out
        is unknown, so the caller records it and sends again under the same provider idempotency handle.
        The token fences the result: only the attempt holding the newest lease may record it.
        """
        now = utcnow()
        table = _table(Delivery)
        with self.engine.begin() as conn:
            before = conn.execute(
                select(table.c.sending_until).where(table.c.id == delivery_id)
            ).scalar_one_or_none()
            token = conn.execute(
                update(table)
                .where(
                    table.c.id == delivery_id,
                    or_(table.c.sending_until.is_(None), table.c.sending_until <= now),
                )
                .values(sending_until=now + lease, send_token=table.c.send_token + 1)
                .returning(table.c.send_token)
            ).scalar_one_or_none()
        return token, token is not None and before is not None

    def renew_lease(self, delivery_id: int, token: int, lease: timedelta) -> bool:
        """Extend a live lease from now (an attempt's heartbeat); False when it is no longer this token's."""
        table = _table(Delivery)
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(table)
                .where(
                    table.c.id == delivery_id,
                    table.c.send_token == token,
                    table.c.sending_until.is_not(None),
                )
                .values(sending_until=utcnow() + lease)
            ).rowcount
        return bool(renewed)

    def finish_sending(self, delivery_id: int, token: int, **values: Any) -> Delivery | None:
        """Record an attempt's result and release its lease (`sending_until` given: leave it at that), only if
        the lease is still `token`'s.

        None when a later attempt took the lease meanwhile: that attempt's result stands, this one is dropped.
        """
        table = _table(Delivery)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(table)
                .where(table.c.id == delivery_id, table.c.send_token == token)
                .values(**{"sending_until": None, **values}, updated_at=utcnow())
            ).rowcount
        if not done:
            return None
        with self.session() as session:
            return session.get(Delivery, delivery_id)

    def marketing_sent_since(self, customer_id: str, since: datetime, channel: str | None = None) -> int:
        """Marketing deliveries sent (or being sent right now) to a customer since `since`."""
        table = _table(Delivery)
        conditions = [
            table.c.customer_id == customer_id,
            table.c.marketing.is_(True),
            or_(table.c.sent_at >= since, table.c.sending_until > utcnow()),
        ]
        if channel is not None:
            conditions.append(table.c.channel == channel)
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table).where(*conditions)) or 0)

    # -- suppressions ---------------------------------------------------------------------------------------

    def suppress(self, channel: str, address: str, reason: str) -> None:
        """Never use this address on this channel again (kept as a hash: the list itself holds no PII)."""
        with self.engine.begin() as conn:
            self._insert_ignore(
                conn,
                Suppression,
                [
                    {
                        "channel": channel,
                        "address_hash": _address_hash(address),
                        "reason": reason[:300],
                        "created_at": utcnow(),
                    }
                ],
            )

    def is_suppressed(self, channel: str, address: str) -> bool:
        with self.session() as session:
            return session.get(Suppression, (channel, _address_hash(address))) is not None

    def mark_delivered(self, channel: str, provider_id: str, delivered_at: datetime) -> Delivery | None:
        """A provider says the message reached the device: a sent delivery becomes delivered (once)."""
        with session_scope(self.engine) as session:
            delivery = session.scalars(
                select(Delivery).where(
                    col(Delivery.channel) == channel, col(Delivery.provider_id) == provider_id
                )
            ).first()
            if delivery is None:
                return None
            if delivery.status == DeliveryStatus.SENT:
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = delivered_at
                delivery.updated_at = utcnow()
                session.add(delivery)
        return delivery

    # -- Zalo OA tokens -------------------------------------------------------------------------------------

    def get_zalo_token(self, app_id: str) -> ZaloToken | None:
        with self.session() as session:
            return session.get(ZaloToken, app_id)

    def rotate_zalo_token(
        self,
        app_id: str,
        seed: str,
        rejected: str | None,
        refresh: Callable[[str], tuple[str, str, float]],
        fresh_for: timedelta,
    ) -> ZaloToken:
        """A usable access token, refreshing the pair at most once across every worker and process.

        Holds a lock on the app's row (`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite)
        while it decides and refreshes. After taking it, it re-reads: when another worker already replaced
        the `rejected` token, that worker's token is the answer and nothing is refreshed. Otherwise
        `refresh(refresh_token)` -> (access token, new refresh token, expires in seconds) runs inside the
        lock, and the new pair is committed before this returns: a refresh token is single-use, so the
        rotated one must be on disk before anybody sends with its access token. An error in `refresh`
        rolls back and leaves the stored pair as it was.
        """
        seed_hash = hashlib.sha256(seed.encode()).hexdigest() if seed else ""
        table = _table(ZaloToken)
        # The write lock is taken before the read: two readers must not both refresh.
        with read_modify_write(self.engine) as conn:
            if seed:
                seeded = ZaloToken(app_id=app_id, refresh_token=seed, seed_hash=seed_hash)
                self._insert_ignore(conn, ZaloToken, [seeded.model_dump()])
            query = select(table).where(table.c.app_id == app_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            found = conn.execute(query).one_or_none()
            if found is None:
                raise LookupError(
                    f"no Zalo refresh token stored for app {app_id}: set TOUCHFLOW_ZALO_REFRESH_TOKEN"
                )
            token = ZaloToken.model_validate(found._mapping)
            now = utcnow()
            if seed and token.seed_hash != seed_hash:
                # The operator set a new seed (the old chain broke or expired): start again from it.
                token.refresh_token, token.access_token, token.seed_hash = seed, None, seed_hash
            elif (
                token.access_token
                and token.access_token != rejected
                and token.expires_at is not None
                and token.expires_at > now + fresh_for
            ):
                return token
            access_token, refresh_token, expires_in = refresh(token.refresh_token)
            token.access_token, token.refresh_token = access_token, refresh_token
            token.expires_at = now + timedelta(seconds=expires_in)
            token.rotations += 1
            token.updated_at = now
            conn.execute(
                update(table).where(table.c.app_id == app_id).values(token.model_dump(exclude={"app_id"}))
            )
        return token

    def zalo_hold(self, app_id: str) -> tuple[datetime, str] | None:
        """Until when ZNS is paused for the app's OA, and Zalo's code that paused it; None when it is not."""
        token = self.get_zalo_token(app_id)
        if token is None or token.held_until is None:
            return None
        return token.held_until, token.held_because or ""

    def hold_zalo(self, app_id: str, because: str, now: datetime, until: datetime) -> bool:
        """Pause ZNS for the app's OA until `until`, unless it is paused already (at `now`).

        True when this call started the pause: one statement decides, so of many workers hearing the same
        error at once exactly one starts it (and tells the operator).
        """
        table = _table(ZaloToken)
        with self.engine.begin() as conn:
            started = conn.execute(
                update(table)
                .where(
                    table.c.app_id == app_id,
                    or_(table.c.held_until.is_(None), table.c.held_until <= now),
                )
                .values(held_until=until, held_because=because[:16])
            )
        return bool(started.rowcount)

    # -- the onsite inbox -----------------------------------------------------------------------------------

    def add_inbox_message(
        self, *, key: str, customer_id: str, title: str, body: str, action_url: str | None
    ) -> InboxMessage:
        """Store a message once per delivery `key`: a retried send gets the row the first one made."""
        row = {
            "key": key,
            "customer_id": customer_id,
            "title": title,
            "body": body,
            "action_url": action_url,
            "created_at": utcnow(),
        }
        with self.engine.begin() as conn:
            self._insert_ignore(conn, InboxMessage, [row])
        with self.session() as session:
            return session.scalars(select(InboxMessage).where(col(InboxMessage.key) == key)).one()

    def list_inbox(
        self, customer_id: str, *, limit: int = 20, cursor: str | None = None, archived: bool = False
    ) -> InboxSlice:
        """A page of messages, newest first: the archived ones when `archived`, else the others.

        Raises ValueError (naming `limit` or `cursor`) for a limit outside 1..100 or a cursor not made here.
        """
        if not 1 <= limit <= INBOX_PAGE_MAX:
            raise InvalidInput(f"limit: must be between 1 and {INBOX_PAGE_MAX}")
        archived_at = col(InboxMessage.archived_at)
        stmt = select(InboxMessage).where(
            col(InboxMessage.customer_id) == customer_id,
            archived_at.is_not(None) if archived else archived_at.is_(None),
        )
        if cursor is not None:
            created_at, ident = _parse_inbox_cursor(cursor)
            stmt = stmt.where(
                or_(
                    col(InboxMessage.created_at) < created_at,
                    and_(col(InboxMessage.created_at) == created_at, col(InboxMessage.id) < ident),
                )
            )
        stmt = stmt.order_by(col(InboxMessage.created_at).desc(), col(InboxMessage.id).desc())
        with self.session() as session:
            rows = list(session.scalars(stmt.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return InboxSlice(rows, _inbox_cursor(rows[-1]) if more else None)

    def inbox_after(self, customer_id: str, after_id: int, limit: int = INBOX_PAGE_MAX) -> list[InboxMessage]:
        """Unarchived messages with an id above `after_id`, oldest first: what a live stream sends next."""
        stmt = (
            select(InboxMessage)
            .where(
                col(InboxMessage.customer_id) == customer_id,
                col(InboxMessage.id) > after_id,
                col(InboxMessage.archived_at).is_(None),
            )
            .order_by(col(InboxMessage.id))
            .limit(limit)
        )
        with self.session() as session:
            return list(session.scalars(stmt))

    def latest_inbox_id(self, customer_id: str | None = None) -> int:
        """The newest message id of the customer (of anyone's, without one), 0 for none."""
        stmt = select(func.max(col(InboxMessage.id)))
        if customer_id is not None:
            stmt = stmt.where(col(InboxMessage.customer_id) == customer_id)
        with self.engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)

    def inbox_unread_count(self, customer_id: str) -> int:
        """Unread (neither read nor archived) messages of the customer."""
        with self.engine.connect() as conn:
            counted = conn.execute(_unread_counts([customer_id])).one_or_none()
        return 0 if counted is None else int(counted[1])

    def inbox_news(
        self, customer_ids: Collection[str], after_id: int, limit: int
    ) -> tuple[int, list[InboxMessage], dict[str, int]]:
        """What the live streams of these customers need, in three statements however many they are: the
        newest message id of anyone's, their unarchived messages above `after_id` (oldest first, at most
        `limit`), and their unread counts (a customer without any left out)."""
        customers = sorted(set(customer_ids))
        new = (
            select(InboxMessage)
            .where(
                col(InboxMessage.id) > after_id,
                col(InboxMessage.customer_id).in_(customers),
                col(InboxMessage.archived_at).is_(None),
            )
            .order_by(col(InboxMessage.id))
            .limit(limit)
        )
        with self.session() as session:
            newest = int(session.scalar(select(func.max(col(InboxMessage.id)))) or 0)
            if not customers:
                return newest, [], {}
            messages = list(session.scalars(new))
            counts = {customer: int(n) for customer, n in session.execute(_unread_counts(customers))}
        return newest, messages, counts

    def mark_inbox_message(self, customer_id: str, message_id: int, mark: InboxMark) -> InboxMessage | None:
        """Set `<mark>_at` (reading also sees) unless set; None when the customer has no such message."""
        with session_scope(self.engine) as session:
            message = session.get(InboxMessage, message_id, with_for_update=True)
            if message is None or message.customer_id != customer_id:
                return None
            now = utcnow()
            marks = ("seen", "read") if mark == "read" else (mark,)
            for name in marks:
                if getattr(message, f"{name}_at") is None:
                    setattr(message, f"{name}_at", now)
            session.add(message)
        return message

    def read_all_inbox(self, customer_id: str) -> int:
        """Mark every unread, unarchived message of the customer read (and seen); returns how many changed."""
        now = utcnow()
        table = _table(InboxMessage)
        where = and_(
            table.c.customer_id == customer_id, table.c.read_at.is_(None), table.c.archived_at.is_(None)
        )
        with self.engine.begin() as conn:
            conn.execute(update(table).where(where, table.c.seen_at.is_(None)).values(seen_at=now))
            result = conn.execute(update(table).where(where).values(read_at=now))
        return int(result.rowcount)

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

    # -- web push subscriptions -----------------------------------------------------------------------------

    def save_push_subscription(
        self, customer_id: str, data: PushSubscriptionIn
    ) -> tuple[PushSubscription, bool]:
        """Store a browser's subscription for a customer; returns it and whether it is new.

        The endpoint is the key: posting it again updates its keys, and moves it to `customer_id` when another
        customer had it (the same browser, now signed in as someone else). An unknown customer gets a bare
        profile, as an event for one would. A customer keeps at most `PUSH_SUBSCRIPTIONS_PER_CUSTOMER`: past
        that, the ones saved least recently are dropped (a browser long gone rarely says so), which also
        bounds how many requests one step makes.
        """
        now = utcnow()
        expires_at = (
            datetime.fromtimestamp(data.expirationTime / 1000, UTC)
            if data.expirationTime is not None
            else None
        )
        values = {
            "customer_id": customer_id,
            "p256dh": data.keys.p256dh,
            "auth": data.keys.auth,
            "user_agent": data.user_agent,
            "expires_at": expires_at,
            "updated_at": now,
            "failures": 0,
        }
        table = _table(PushSubscription)
        with self.engine.begin() as conn:
            self._insert_ignore(
                conn,
                Customer,
                [{"id": customer_id, "attributes": {}, "consents": {}, "created_at": now, "updated_at": now}],
            )
            # Insert-or-ignore, then update: safe when two requests carry the same endpoint at once.
            created = self._insert_ignore(
                conn,
                PushSubscription,
                [{**values, "endpoint": data.endpoint, "created_at": now}],
                returning=table.c.id,
            )
            if not created:
                conn.execute(update(table).where(table.c.endpoint == data.endpoint).values(**values))
            beyond = conn.scalars(
                select(table.c.id)
                .where(table.c.customer_id == customer_id)
                .order_by(table.c.updated_at.desc(), table.c.id.desc())
                .offset(PUSH_SUBSCRIPTIONS_PER_CUSTOMER)
            ).all()
            if beyond:
                conn.execute(delete(table).where(table.c.id.in_(beyond)))
        with self.session() as session:
            row = session.scalars(
                select(PushSubscription).where(col(PushSubscription.endpoint) == data.endpoint)
            ).one()
        return row, bool(created)

    def push_subscriptions(self, customer_id: str) -> list[PushSubscription]:
        with self.session() as session:
            stmt = (
                select(PushSubscription)
                .where(col(PushSubscription.customer_id) == customer_id)
                .order_by(col(PushSubscription.id))
            )
            return list(session.scalars(stmt))

    def delete_push_subscription(self, customer_id: str, endpoint: str) -> bool:
        """Forget one of a customer's subscriptions (the browser unsubscribed); False when there was none."""
        table = _table(PushSubscription)
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(table).where(table.c.customer_id == customer_id, table.c.endpoint == endpoint)
            )
        return bool(result.rowcount)

    def record_push_result(self, subscription_id: int, *, ok: bool, gone: bool = False) -> None:
        """After a send: a success resets the failure count, a failure adds one, `gone` deletes the row."""
        table = _table(PushSubscription)
        where = table.c.id == subscription_id
        with self.engine.begin() as conn:
            if gone:
                conn.execute(delete(table).where(where))
            elif ok:
                conn.execute(update(table).where(where).values(last_success_at=utcnow(), failures=0))
            else:
                conn.execute(update(table).where(where).values(failures=table.c.failures + 1))
