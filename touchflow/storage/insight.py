"""The reads behind the dashboard and the funnels' attribution: conversions and the touchpoints before them,
entries over time, the stage funnel, segment sizes, a customer's timeline; every one over [since, until)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection

from touchflow.models import (
    Attribution,
    AttributionState,
    Broadcast,
    Customer,
    Delivery,
    DeliveryStatus,
    Engagement,
    Event,
    InboxMessage,
    JourneyEntry,
    SegmentMembership,
    SegmentMovement,
    utcnow,
)
from touchflow.storage.base import Repository, epoch_bucket, insert_ignore, locked, table, within

_SENT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


@dataclass(frozen=True)
class TimelineRow:
    """One thing that happened to a customer; `rank` and `key` order rows of the same instant."""

    at: datetime
    rank: int
    key: str
    kind: str
    data: dict[str, Any]


# Kept attributions go up to events received this long ago (a send in flight has been recorded by then), and
# are brought up to date at most this often.
SETTLED = timedelta(minutes=1)
CATCH_UP_EVERY = timedelta(seconds=10)

# Sources of the timeline, by rank: the order of rows at the same instant (newest first, then lower rank).
_EVENT, _ENTERED, _ENDED, _TOUCHPOINT, _SEGMENT = range(5)


class Insight(Repository):
    # -- attribution ---------------------------------------------------------------------------------------

    def attribution_inputs(
        self,
        names: Sequence[str],
        window: timedelta,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        customer_id: str | None = None,
        received_after: datetime | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """The conversions (events named `names`) in [since, until) and every message sent to their customers
        in the window before them: what `attribution.attribute` decides between, as rows of
        (id, customer_id, name, occurred_at, properties) and of `attribution.Touchpoint`'s fields.

        With `customer_id`, only that customer's; with `received_after`, only events received since then
        (those the kept attributions do not hold yet)."""
        with self.engine.connect() as conn:
            return _conversions_and_touchpoints(
                conn, names, window, since, until, customer_id=customer_id, received=(received_after, None)
            )

    def keep_attributions(
        self,
        fingerprint: str,
        names: Sequence[str],
        window: timedelta,
        decide: Callable[[list[Any], list[Any]], list[dict[str, Any]]],
    ) -> datetime | None:
        """Bring the kept attributions (storage.rollups explains why) up to the events received a minute
        ago; returns how far they go, so the caller matches the newer conversions live. `decide` takes the
        rows `attribution_inputs` answers and returns the `Attribution` rows to keep, one per conversion."""
        state, kept = table(AttributionState), table(Attribution)
        settled = utcnow() - SETTLED
        with self.engine.connect() as conn:  # most views find them current: no write, no lock
            current = conn.execute(select(state).where(state.c.id == 1)).one_or_none()
        if (
            current is not None
            and current.fingerprint == fingerprint
            and current.watermark is not None
            and current.watermark >= settled - CATCH_UP_EVERY
        ):
            fresh: datetime = current.watermark
            return fresh
        with self.engine.begin() as conn:
            insert_ignore(conn, AttributionState, [{"id": 1, "fingerprint": fingerprint, "watermark": None}])
            current = conn.execute(locked(conn, select(state).where(state.c.id == 1))).one()
            watermark: datetime | None = current.watermark
            if current.fingerprint != fingerprint:  # another window or other goals: start over
                conn.execute(delete(kept))
                watermark = None
            elif watermark is not None and watermark >= settled - CATCH_UP_EVERY:
                return watermark
            rows = decide(
                *_conversions_and_touchpoints(conn, names, window, None, None, received=(watermark, settled))
            )
            for start in range(0, len(rows), 1000):
                insert_ignore(conn, Attribution, rows[start : start + 1000])
            conn.execute(
                update(state).where(state.c.id == 1).values(fingerprint=fingerprint, watermark=settled)
            )
        return settled

    def kept_totals(
        self, since: datetime | None, until: datetime | None, *, journey: str | None = None
    ) -> list[tuple[Any, ...]]:
        """(journey, step, variant, stage, conversions, revenue) of the kept attributions of conversions in
        [since, until) credited to a touchpoint (of `journey`)."""
        kept = table(Attribution)
        keys = (kept.c.journey, kept.c.step, kept.c.variant, kept.c.stage)
        query = select(*keys, func.count(), func.sum(kept.c.revenue)).where(
            kept.c.delivery_id.is_not(None), *within(kept.c.at, since, until)
        )
        if journey is not None:
            query = query.where(kept.c.journey == journey)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query.group_by(*keys))]

    # -- the overview --------------------------------------------------------------------------------------

    def entries_histogram(self, since: datetime, until: datetime, buckets: int) -> dict[str, list[int]]:
        """Per journey: runs entered in each of `buckets` equal slices of [since, until), oldest first."""
        entries = table(JourneyEntry)
        width = max((until - since).total_seconds() / buckets, 1.0)
        with self.engine.connect() as conn:
            bucket = epoch_bucket(conn, entries.c.entered_at, max(int(width), 1), int(since.timestamp()))
            query = (
                select(entries.c.journey, bucket, func.count())
                .where(*within(entries.c.entered_at, since, until))
                .group_by(entries.c.journey, bucket)
            )
            rows = conn.execute(query).all()
        histogram: dict[str, list[int]] = {}
        for journey, index, count in rows:
            slots = histogram.setdefault(str(journey), [0] * buckets)
            slots[min(max(int(index), 0), buckets - 1)] += int(count)
        return histogram

    def stage_counts(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, tuple[int, int]]:
        """Per stage: (messages sent, customers sent at least one), across journeys and broadcasts."""
        deliveries = table(Delivery)
        query = (
            select(deliveries.c.stage, func.count(), func.count(func.distinct(deliveries.c.customer_id)))
            .where(deliveries.c.status.in_(_SENT), *within(deliveries.c.created_at, since, until))
            .group_by(deliveries.c.stage)
        )
        with self.engine.connect() as conn:
            return {str(stage or "-"): (int(n), int(c)) for stage, n, c in conn.execute(query)}

    def moved_on(
        self, stages: Sequence[str], since: datetime | None = None, until: datetime | None = None
    ) -> list[int]:
        """For each stage but the last: customers sent messages of both it and the next stage."""
        deliveries = table(Delivery)
        both: list[int] = []
        with self.engine.connect() as conn:
            for pair in pairwise(stages):
                query = (
                    select(deliveries.c.customer_id)
                    .where(
                        deliveries.c.status.in_(_SENT),
                        deliveries.c.stage.in_(list(pair)),
                        *within(deliveries.c.created_at, since, until),
                    )
                    .group_by(deliveries.c.customer_id)
                    .having(func.count(func.distinct(deliveries.c.stage)) == 2)
                )
                both.append(int(conn.scalar(select(func.count()).select_from(query.subquery())) or 0))
        return both

    def segment_sizes(self) -> dict[str, int]:
        members = table(SegmentMembership)
        query = select(members.c.segment, func.count()).group_by(members.c.segment)
        with self.engine.connect() as conn:
            return {str(name): int(n) for name, n in conn.execute(query)}

    def broadcasts(self, since: datetime | None, until: datetime | None, limit: int = 20) -> list[str]:
        """Ids of the broadcasts created in [since, until), newest first."""
        broadcasts = table(Broadcast)
        query = (
            select(broadcasts.c.id)
            .where(*within(broadcasts.c.created_at, since, until))
            .order_by(broadcasts.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(i) for i in conn.scalars(query)]

    def find_customers(self, text: str, limit: int = 20) -> list[str]:
        """Customer ids that are `text`, start with it, or whose email is it (any case)."""
        customers = table(Customer)
        prefix = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = (
            select(customers.c.id)
            .where(
                or_(
                    customers.c.id.like(prefix, escape="\\"),
                    func.lower(customers.c.email) == text.strip().lower(),
                )
            )
            .order_by(customers.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(i) for i in conn.scalars(query)]

    # -- a customer's timeline -----------------------------------------------------------------------------

    def timeline(
        self,
        customer_id: str,
        limit: int,
        before: tuple[datetime, int, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TimelineRow]:
        """The customer's `limit` latest rows after the cursor `before` (at, rank, key), newest first (rows of
        one instant by rank, then key descending): events, journey entries and ends, touchpoints with their
        outcome, segment moves."""
        events, entries, deliveries = table(Event), table(JourneyEntry), table(Delivery)
        moves = table(SegmentMovement)

        def page(query: Select[Any], at: Any, key: Any, rank: int) -> Select[Any]:
            conditions = [*within(at, since, until)]
            if before is not None:
                c_at, c_rank, c_key = before
                # Rows of one instant come in rank order: after the cursor's come those of a higher rank.
                if rank > c_rank:
                    conditions.append(at <= c_at)
                elif rank < c_rank:
                    conditions.append(at < c_at)
                else:
                    cursor_key: Any = int(c_key) if rank != _EVENT else c_key
                    conditions.append(or_(at < c_at, and_(at == c_at, key < cursor_key)))
            return query.where(*conditions).order_by(at.desc(), key.desc()).limit(limit)

        rows: list[TimelineRow] = []
        with self.engine.connect() as conn:
            query = select(events.c.id, events.c.name, events.c.occurred_at, events.c.properties)
            for i, name, at, props in conn.execute(
                page(
                    query.where(events.c.customer_id == customer_id),
                    events.c.occurred_at,
                    events.c.id,
                    _EVENT,
                )
            ):
                rows.append(TimelineRow(at, _EVENT, str(i), "event", {"name": name, "properties": props}))
            mine = entries.c.customer_id == customer_id
            entry_columns = (entries.c.id, entries.c.journey, entries.c.workflow_id, entries.c.status)
            for i, journey, workflow_id, status, at in conn.execute(
                page(
                    select(*entry_columns, entries.c.entered_at).where(mine),
                    entries.c.entered_at,
                    entries.c.id,
                    _ENTERED,
                )
            ):
                data = {"journey": journey, "workflow_id": workflow_id, "status": status}
                rows.append(TimelineRow(at, _ENTERED, str(i), "journey_entered", data))
            ended = select(*entry_columns, entries.c.ended_by, entries.c.ended_at).where(
                mine, entries.c.ended_at.is_not(None)
            )
            for i, journey, workflow_id, status, ended_by, at in conn.execute(
                page(ended, entries.c.ended_at, entries.c.id, _ENDED)
            ):
                data = {
                    "journey": journey,
                    "workflow_id": workflow_id,
                    "status": status,
                    "ended_by": ended_by,
                }
                rows.append(TimelineRow(at, _ENDED, str(i), "journey_ended", data))
            touch_columns = (
                deliveries.c.id,
                deliveries.c.journey,
                deliveries.c.step,
                deliveries.c.stage,
                deliveries.c.channel,
                deliveries.c.variant,
                deliveries.c.status,
                deliveries.c.error,
                deliveries.c.sent_at,
                deliveries.c.created_at,
            )
            touches = conn.execute(
                page(
                    select(*touch_columns).where(deliveries.c.customer_id == customer_id),
                    deliveries.c.created_at,
                    deliveries.c.id,
                    _TOUCHPOINT,
                )
            ).all()
            outcomes = self._outcomes(conn, [int(t.id) for t in touches])
            for t in touches:
                opened, clicks = outcomes.get(int(t.id), (None, 0))
                data = {
                    "delivery_id": t.id,
                    "journey": t.journey,
                    "step": t.step,
                    "stage": t.stage,
                    "channel": t.channel,
                    "variant": t.variant,
                    "status": t.status,
                    "reason": t.error,
                    "sent_at": t.sent_at,
                    "opened_at": opened,
                    "clicks": clicks,
                }
                rows.append(TimelineRow(t.created_at, _TOUCHPOINT, str(t.id), "touchpoint", data))
            query = select(moves.c.id, moves.c.segment, moves.c.entered, moves.c.at)
            for i, segment, entered, at in conn.execute(
                page(query.where(moves.c.customer_id == customer_id), moves.c.at, moves.c.id, _SEGMENT)
            ):
                kind = "segment_entered" if entered else "segment_exited"
                rows.append(TimelineRow(at, _SEGMENT, str(i), kind, {"segment": segment}))
        rows.sort(key=lambda r: (r.at, -r.rank, r.key if r.rank == _EVENT else int(r.key)), reverse=True)
        return rows[:limit]

    @staticmethod
    def _outcomes(conn: Any, delivery_ids: list[int]) -> dict[int, tuple[datetime | None, int]]:
        """Per delivery: when it was first opened (or read in the inbox), and how many clicks it had."""
        if not delivery_ids:
            return {}
        engagements, deliveries, inbox = table(Engagement), table(Delivery), table(InboxMessage)
        found: dict[int, tuple[datetime | None, int]] = {}
        query = (
            select(
                engagements.c.delivery_id,
                func.min(engagements.c.at).filter(engagements.c.kind == "open"),
                func.count().filter(engagements.c.kind == "click"),
            )
            .where(engagements.c.delivery_id.in_(delivery_ids))
            .group_by(engagements.c.delivery_id)
        )
        for delivery_id, opened, clicks in conn.execute(query):
            found[int(delivery_id)] = (opened, int(clicks))
        read = (
            select(deliveries.c.id, inbox.c.read_at)
            .select_from(deliveries.join(inbox, inbox.c.key == deliveries.c.key))
            .where(deliveries.c.id.in_(delivery_ids), inbox.c.read_at.is_not(None))
        )
        for delivery_id, read_at in conn.execute(read):
            opened, clicks = found.get(int(delivery_id), (None, 0))
            found[int(delivery_id)] = (opened or read_at, clicks)
        return found


def _conversions_and_touchpoints(
    conn: Connection,
    names: Sequence[str],
    window: timedelta,
    since: datetime | None,
    until: datetime | None,
    *,
    customer_id: str | None = None,
    received: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[list[Any], list[Any]]:
    events, deliveries = table(Event), table(Delivery)
    sent = and_(deliveries.c.status.in_(_SENT), deliveries.c.sent_at.is_not(None))
    scope: list[ColumnElement[bool]] = [
        events.c.name.in_(list(names)),
        *within(events.c.occurred_at, since, until),
        *within(events.c.received_at, *received),
    ]
    if customer_id is not None:
        scope.append(events.c.customer_id == customer_id)
    conversions = [
        tuple(row)
        for row in conn.execute(
            select(
                events.c.id, events.c.customer_id, events.c.name, events.c.occurred_at, events.c.properties
            ).where(*scope)
        )
    ]
    if not conversions:
        return [], []
    earliest = min(row[3] for row in conversions) - window
    latest = max(row[3] for row in conversions)
    touches = select(
        deliveries.c.id,
        deliveries.c.customer_id,
        deliveries.c.journey,
        deliveries.c.step,
        deliveries.c.channel,
        deliveries.c.variant,
        deliveries.c.stage,
        deliveries.c.sent_at,
    ).where(
        sent,
        deliveries.c.customer_id.in_(select(events.c.customer_id).where(*scope)),
        deliveries.c.sent_at >= earliest,
        deliveries.c.sent_at <= latest,
    )
    return conversions, [tuple(row) for row in conn.execute(touches)]
