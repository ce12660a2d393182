"""Events and the outbox: ingest stores each event once with its outbox entry and applies the ingest rules in
the same transaction; the relays lease whole customers' entries (`relay_leases`) to hand them on in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlmodel import col

from touchflow.db import read_modify_write
from touchflow.ingest_rules import IngestRule
from touchflow.models import (
    Coupon,
    CouponRedemption,
    Customer,
    Event,
    EventIn,
    Ingested,
    IngestStatus,
    OutboxEntry,
    RelayLease,
    is_anonymous,
    utcnow,
)
from touchflow.segments import Move
from touchflow.storage.base import Repository, among, dialect_insert, insert_ignore, table
from touchflow.storage.coupons import locked_by_code, mark_redeemed, record_redemption
from touchflow.storage.customers import bare_customer, merge_consents
from touchflow.storage.identities import known_ids
from touchflow.storage.segments import Segments


@dataclass(frozen=True)
class ClaimedEvent:
    """An outbox entry leased to one relay, with the event it carries."""

    outbox_id: int
    attempts: int
    event: Event
    trace_context: str | None = None  # the accepting request's traceparent, when tracing


class Events(Repository):
    def __init__(self, engine: Engine, rules: Sequence[IngestRule], segments: Segments | None = None) -> None:
        super().__init__(engine)
        self.rules = tuple(rules)
        self.segments = segments

    def ingest(
        self, events: Sequence[EventIn], relayed_names: Iterable[str], trace_context: str | None = None
    ) -> list[Ingested]:
        """Store events once each, create bare profiles for unknown customers, apply the ingest rules to the
        new events, queue the relevant ones (and those the rules derived).

        One transaction: an event is stored together with its outbox entry and what its rules do, or not at
        all, so an accepted event always reaches its journeys (store-then-relay). A repeated `id` adds
        nothing: a duplicate when it repeats the stored event, a conflict when the stored one is another
        (`EventIn.conflict_with`). `trace_context` (a W3C traceparent) goes on the outbox entries.
        """
        now = utcnow()
        relayed = set(relayed_names)
        ids = table(Event).c.id
        anonymous = sorted({event.customer_id for event in events if is_anonymous(event.customer_id)})
        # A batch naming visitors is serialised with a merge of them (`Identities.merge` locks the visitor's
        # profile first): the lookup of `identities` below then sees a merge that commits meanwhile, and the
        # event never lands under a merged-away id. On PostgreSQL the visitors' profiles are locked
        # `FOR NO KEY UPDATE` (not `FOR SHARE`: two batches of one visitor that both go on to update the
        # profile, an unsubscribe, would deadlock on a shared lock); SQLite has no row locks, so that batch
        # takes the write lock from its start. A batch of known customers only keeps the lazy transaction.
        serialised = anonymous and self.engine.dialect.name == "sqlite"
        with read_modify_write(self.engine) if serialised else self.engine.begin() as conn:
            if anonymous and conn.dialect.name == "postgresql":
                visitors = table(Customer).c.id
                conn.execute(
                    select(visitors)
                    .where(among(conn, visitors, anonymous))
                    .order_by(visitors)
                    .with_for_update(key_share=True)
                )
            # An anonymous id merged already names the customer it became (a batch the browser sent late).
            if merged := known_ids(conn, {event.customer_id for event in events}):
                events = [
                    event.model_copy(update={"customer_id": merged[event.customer_id]})
                    if event.customer_id in merged
                    else event
                    for event in events
                ]
            rows = [_row(event, now) for event in events]
            named = {event.customer_id for event in events}
            # Most events are of known customers: insert (or ignore) only the profiles not found.
            known = table(Customer).c.id
            found = set(conn.scalars(select(known).where(among(conn, known, named))))
            # In id order, as a rule that locks customers takes them: two batches never deadlock on them.
            new_customers = [bare_customer(customer_id, now) for customer_id in sorted(named - found)]
            insert_ignore(conn, Customer, new_customers)
            inserted = insert_ignore(conn, Event, rows, returning=ids)
            # Each new event once, as stored (the first item of its id): a later item repeating the id is a
            # duplicate or a conflict, and does nothing.
            first: dict[str, EventIn] = {}
            for event in events:
                if event.id in inserted:
                    first.setdefault(event.id, event)
            created = frozenset(row["id"] for row in new_customers)
            new = list(first.values())
            on_ingest = _OnIngest(conn, now, frozenset(relayed), created, self.segments)
            derived = [_row(made, now) for rule in self.rules for made in rule(on_ingest, new)]
            if derived:
                inserted |= insert_ignore(conn, Event, derived, returning=ids)
            outbox = [
                {
                    "event_id": row["id"],
                    "customer_id": row["customer_id"],
                    "attempts": 0,
                    "available_at": now,
                    "trace_context": trace_context,
                }
                for row in [*rows, *derived]
                if row["id"] in inserted and row["name"] in relayed
            ]
            insert_ignore(conn, OutboxEntry, outbox)
            # A repeated id (of a stored event, or of an earlier item) is judged against the stored event.
            counts = Counter(event.id for event in events)
            stored = _events_by_id(conn, [i for i, n in counts.items() if n > 1 or i not in inserted])
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

    def get(self, event_id: str) -> Event | None:
        with self.session() as session:
            return session.get(Event, event_id)

    def of_customer(self, customer_id: str, limit: int = 50) -> list[Event]:
        """The customer's latest events, newest first."""
        with self.session() as session:
            stmt = (
                select(Event)
                .where(col(Event.customer_id) == customer_id)
                .order_by(col(Event.occurred_at).desc())
                .limit(limit)
            )
            return list(session.scalars(stmt))

    def first_since(
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

    def existing_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these events are still stored (an erasure deletes a customer's)."""
        if not event_ids:
            return set()
        events = table(Event)
        with self.engine.connect() as conn:
            return set(conn.scalars(select(events.c.id).where(events.c.id.in_(list(event_ids)))))


def _events_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    if not ids:
        return {}
    events = table(Event)
    query = select(events.c.id, events.c.customer_id, events.c.name, events.c.properties)
    return {row.id: row for row in conn.execute(query.where(among(conn, events.c.id, ids)))}


def _row(event: EventIn, now: datetime) -> dict[str, Any]:
    return {
        "id": event.id,
        "customer_id": event.customer_id,
        "name": event.name,
        "properties": event.properties,
        "occurred_at": event.timestamp or now,
        "received_at": now,
        "context": event.context,
    }


@dataclass(frozen=True)
class _OnIngest:
    """The rules' `IngestTransaction`: the repositories' primitives on the ingest's own connection, so what a
    rule writes commits or rolls back with the events."""

    conn: Connection
    now: datetime
    relayed: frozenset[str] = frozenset()
    created: frozenset[str] = frozenset()
    segments: Segments | None = None

    def move_segments(self, events: Sequence[EventIn]) -> list[Move]:
        if self.segments is None or not events:
            return []
        pairs = {(event.customer_id, event.name) for event in events}
        return self.segments.on_ingest(self.conn, pairs, self.created, self.now, self.relayed)

    def merge_consents(self, customer_id: str, changes: dict[str, bool]) -> None:
        merge_consents(self.conn, customer_id, changes)

    def coupon_to_redeem(self, code: str) -> Coupon | None:
        return locked_by_code(self.conn, code)

    def redeem_coupon(self, coupon: Coupon, *, order_id: str | None, event_id: str) -> bool:
        return mark_redeemed(self.conn, coupon, self.now, order_id=order_id, event_id=event_id)

    def record_redemption(self, redemption: CouponRedemption) -> None:
        record_redemption(self.conn, redemption)


class Outbox(Repository):
    """The events waiting for the relays; a relay holds whole customers (`relay_leases`) while it routes."""

    def claim(self, limit: int, lease: timedelta, holder: str) -> list[ClaimedEvent]:
        """Lease whole customers to the relay `holder`: up to `limit` entries, oldest first, of customers that
        no other relay holds and whose oldest entry is due; the caller routes each customer's in order.

        A customer is taken with a row in `relay_leases` (insert, or take over a lapsed lease), so one
        customer's events are never relayed by two relays at once. An entry waiting out its back-off holds
        back its customer's later entries (they would overtake it). One transaction, `BEGIN IMMEDIATE` on
        SQLite; on PostgreSQL the lease upsert decides between relays racing for a customer, in customer id
        order (no deadlock). Every transaction here touching both tables takes lease rows first.
        """
        now = utcnow()
        outbox, leases = table(OutboxEntry), table(RelayLease)
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
            offer = dialect_insert(conn, leases).values(
                [{"customer_id": c, "holder": holder, "until": now + lease} for c in candidates]
            )
            take = offer.on_conflict_do_update(
                index_elements=[leases.c.customer_id],
                set_={"holder": offer.excluded.holder, "until": offer.excluded.until},
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
                    .returning(outbox.c.id, outbox.c.event_id, outbox.c.attempts, outbox.c.trace_context)
                ).all()
                event_ids = [row.event_id for row in claimed]
                events = {
                    row.id: Event.model_validate(row._mapping)
                    for row in conn.execute(select(table(Event)).where(table(Event).c.id.in_(event_ids)))
                }
                orphans = [row.id for row in claimed if row.event_id not in events]
                if orphans:  # an entry whose event is gone has nothing to relay
                    conn.execute(delete(outbox).where(outbox.c.id.in_(orphans)))
            # Customers won but with nothing to relay now (emptied or backing off meanwhile, or past `limit`).
            idle = won - {event.customer_id for event in events.values()}
            if idle:
                conn.execute(delete(leases).where(leases.c.customer_id.in_(idle), leases.c.holder == holder))
        return [
            ClaimedEvent(row.id, row.attempts, events[row.event_id], row.trace_context)
            for row in sorted(claimed, key=lambda r: r.id)
            if row.event_id in events
        ]

    def extend_leases(self, holder: str, customers: Sequence[str], lease: timedelta) -> set[str]:
        """Renew `holder`'s leases of `customers` for `lease` from now; returns the customers it still holds
        (a lease that lapsed and was taken over is not renewed)."""
        if not customers:
            return set()
        leases = table(RelayLease)
        with self.engine.begin() as conn:
            renewed = conn.scalars(
                update(leases)
                .where(leases.c.customer_id.in_(list(customers)), leases.c.holder == holder)
                .values(until=utcnow() + lease)
                .returning(leases.c.customer_id)
            )
            return set(renewed)

    def finish(self, outbox_ids: Sequence[int], holder: str, customers: Iterable[str] = ()) -> None:
        """Delete relayed entries and end `holder`'s leases of `customers` (the pass is over)."""
        customers = list(customers)
        if not outbox_ids and not customers:
            return
        leases = table(RelayLease)
        with self.engine.begin() as conn:
            if customers:
                conn.execute(
                    delete(leases).where(leases.c.customer_id.in_(customers), leases.c.holder == holder)
                )
            if outbox_ids:
                conn.execute(delete(table(OutboxEntry)).where(table(OutboxEntry).c.id.in_(outbox_ids)))

    def retry(self, outbox_id: int, error: str, delay: timedelta, holder: str) -> None:
        """Put an entry off for `delay`; only the relay holding its customer may (a relay whose lease was
        taken over changes nothing)."""
        outbox, leases = table(OutboxEntry), table(RelayLease)
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

    def size(self) -> int:
        """How many entries wait, due or not."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(table(OutboxEntry))) or 0)

    def backlog(self) -> tuple[int, datetime | None]:
        """How many entries wait, and when the oldest of their events was received (None: none waits)."""
        outbox, events = table(OutboxEntry), table(Event)
        query = select(func.count(outbox.c.id), func.min(events.c.received_at)).select_from(
            outbox.outerjoin(events, events.c.id == outbox.c.event_id)
        )
        with self.engine.connect() as conn:
            depth, oldest = conn.execute(query).one()
        if isinstance(oldest, str):  # SQLite hands an aggregate back as stored text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(depth or 0), oldest
