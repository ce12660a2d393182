"""The reads behind the dashboard and the funnels' attribution: conversions and the touchpoints before them,
entries over time, the stage funnel, segment sizes, a customer's timeline; every one over [since, until)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select

from touchflow.models import (
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
)
from touchflow.storage.base import Repository, epoch_seconds, table, within

_SENT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


@dataclass(frozen=True)
class TimelineRow:
    """One thing that happened to a customer; `rank` and `key` order rows of the same instant."""

    at: datetime
    rank: int
    key: str
    kind: str
    data: dict[str, Any]


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
        journey: str | None = None,
        customer_id: str | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """The conversions (events named `names`) in [since, until) and every message sent to their customers
        in the window before them: what `attribution.attribute` decides between, as rows of
        (id, customer_id, name, occurred_at, properties) and of `attribution.Touchpoint`'s fields.

        With `journey`, only the customers that journey sent to in the window are looked at (the others'
        conversions cannot be its); with `customer_id`, only that customer.
        """
        events, deliveries = table(Event), table(Delivery)
        sent = and_(deliveries.c.status.in_(_SENT), deliveries.c.sent_at.is_not(None))
        earliest = since - window if since is not None else None
        scope: list[ColumnElement[bool]] = [
            events.c.name.in_(list(names)),
            *within(events.c.occurred_at, since, until),
        ]
        if customer_id is not None:
            scope.append(events.c.customer_id == customer_id)
        if journey is not None:
            touched = select(deliveries.c.customer_id).where(
                deliveries.c.journey == journey, sent, *within(deliveries.c.sent_at, earliest, until)
            )
            scope.append(events.c.customer_id.in_(touched))
        conversions_query = select(
            events.c.id, events.c.customer_id, events.c.name, events.c.occurred_at, events.c.properties
        ).where(*scope)
        converters = select(events.c.customer_id).where(*scope)
        touch_query = select(
            deliveries.c.id,
            deliveries.c.customer_id,
            deliveries.c.journey,
            deliveries.c.step,
            deliveries.c.channel,
            deliveries.c.variant,
            deliveries.c.stage,
            deliveries.c.sent_at,
        ).where(
            sent, deliveries.c.customer_id.in_(converters), *within(deliveries.c.sent_at, earliest, until)
        )
        with self.engine.connect() as conn:
            conversions = [tuple(row) for row in conn.execute(conversions_query)]
            touchpoints = [tuple(row) for row in conn.execute(touch_query)] if conversions else []
        return conversions, touchpoints

    # -- the overview --------------------------------------------------------------------------------------

    def entries_histogram(self, since: datetime, until: datetime, buckets: int) -> dict[str, list[int]]:
        """Per journey: runs entered in each of `buckets` equal slices of [since, until), oldest first."""
        entries = table(JourneyEntry)
        width = max((until - since).total_seconds() / buckets, 1.0)
        with self.engine.connect() as conn:
            offset = epoch_seconds(conn, entries.c.entered_at) - literal(since.timestamp())
            bucket = func.floor(offset / width)
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
