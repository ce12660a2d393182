"""What keeps the journey map fast over millions of deliveries: per-hour rollups of a journey's deliveries,
kept in a table and brought up to date on read (the attributions are kept alike: `storage.insight`).

An hour of a journey (by delivery creation) is counted once into `funnel_rollups` and
marked with when (`funnel_rollup_hours`). A delivery of that hour updated since (its `updated_at`), an open or
click recorded since, or an inbox read since, makes the hour stale: it is counted again on the next read. The
hours at the edges of a period, and the current one, are always counted live. So a read equals counting the
deliveries themselves, as long as every write to a delivery sets `updated_at` (storage.deliveries and
storage.erasure do).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import case, delete, exists, func, or_, select, update
from sqlalchemy.engine import Connection

from touchflow.models import (
    Delivery,
    DeliveryStatus,
    Engagement,
    FunnelRollup,
    FunnelRollupHour,
    InboxMessage,
    utcnow,
)
from touchflow.storage.base import Repository, epoch_bucket, insert_ignore, locked, table, within

HOUR = 3600
# Writers' clocks differ a little: an hour is marked as counted this long before it was, so a write stamped
# by a slightly slow clock still makes it stale.
CLOCK_MARGIN = timedelta(minutes=1)
_UNSENT = (DeliveryStatus.SKIPPED, DeliveryStatus.FAILED, DeliveryStatus.CAPPED, DeliveryStatus.DEFERRED)


class FunnelRow(NamedTuple):
    step: str
    status: str
    channel: str | None
    variant: str | None
    reason: str | None  # the error of a message not sent
    n: int
    opened: int  # opened at least once (the pixel, or read in the onsite inbox)
    clicked: int  # a tracked link clicked at least once


def _at(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR, UTC)


class Rollups(Repository):
    # -- funnels -------------------------------------------------------------------------------------------

    def funnel(self, journey: str, since: datetime | None, until: datetime | None) -> list[FunnelRow]:
        """A journey's deliveries made in [since, until), counted: rollups for whole past hours, the rest
        live; rows of the same key may repeat (the caller adds them up)."""
        now = utcnow()
        end = min(until, now) if until is not None else now
        # Hours before the journey's first delivery hold nothing: none is rolled up (or marked).
        first_made = self._first(journey)
        if first_made is None:
            return []
        start = max(since, first_made) if since is not None else first_made
        if start >= end:
            return []
        first, last = -(-int(start.timestamp()) // HOUR), int(end.timestamp()) // HOUR
        if first >= last:
            return self._live(journey, since, until)
        rows = self._live(journey, since, _at(first)) + self._live(journey, _at(last), until)
        return rows + self._rolled_up(journey, first, last, now)

    def _first(self, journey: str) -> datetime | None:
        deliveries = table(Delivery)
        with self.engine.connect() as conn:
            found: datetime | None = conn.scalar(
                select(func.min(deliveries.c.created_at)).where(deliveries.c.journey == journey)
            )
        return found

    def _live(self, journey: str, since: datetime | None, until: datetime | None) -> list[FunnelRow]:
        with self.engine.connect() as conn:
            return [FunnelRow(*row[1:]) for row in _count(conn, journey, since, until, by_hour=False)]

    def _rolled_up(self, journey: str, first: int, last: int, now: datetime) -> list[FunnelRow]:
        rollups, hours = table(FunnelRollup), table(FunnelRollupHour)
        with self.engine.connect() as conn:
            counted = {
                int(h): at
                for h, at in conn.execute(
                    select(hours.c.hour, hours.c.computed_at).where(
                        hours.c.journey == journey, hours.c.hour >= first, hours.c.hour < last
                    )
                )
            }
            stale = set(range(first, last)) - set(counted)
            if counted:
                for hour, changed in _changes(conn, journey, first, last, min(counted.values())):
                    if hour in counted and changed >= counted[hour]:
                        stale.add(hour)
        for span in _spans(sorted(stale)):
            self._recount(journey, span, now)
        columns = (rollups.c.step, rollups.c.status, rollups.c.channel, rollups.c.variant, rollups.c.reason)
        query = (
            select(
                *columns, func.sum(rollups.c.count), func.sum(rollups.c.opened), func.sum(rollups.c.clicked)
            )
            .where(rollups.c.journey == journey, rollups.c.hour >= first, rollups.c.hour < last)
            .group_by(*columns)
        )
        with self.engine.connect() as conn:
            return [
                FunnelRow(str(s), str(st), ch, v, r, int(n), int(o), int(c))
                for s, st, ch, v, r, n, o, c in conn.execute(query)
            ]

    def _recount(self, journey: str, span: range, now: datetime) -> None:
        """Count a span of stale hours again and keep them, marked as of `now` (less the clock margin)."""
        rollups, hours = table(FunnelRollup), table(FunnelRollupHour)
        marked = now - CLOCK_MARGIN
        mine = [hours.c.journey == journey, hours.c.hour >= span.start, hours.c.hour < span.stop]
        with self.engine.begin() as conn:
            marks = [{"journey": journey, "hour": h, "computed_at": marked} for h in span]
            for start in range(0, len(marks), 1000):
                insert_ignore(conn, FunnelRollupHour, marks[start : start + 1000])
            # Held until this transaction ends: two processes recounting the same hours take turns.
            conn.execute(locked(conn, select(hours.c.hour).where(*mine)))
            conn.execute(
                delete(rollups).where(
                    rollups.c.journey == journey, rollups.c.hour >= span.start, rollups.c.hour < span.stop
                )
            )
            rows = [
                {
                    "journey": journey,
                    "hour": hour,
                    "step": step,
                    "status": status,
                    "channel": channel,
                    "variant": variant,
                    "reason": reason,
                    "count": n,
                    "opened": opened,
                    "clicked": clicked,
                }
                for hour, step, status, channel, variant, reason, n, opened, clicked in _count(
                    conn, journey, _at(span.start), _at(span.stop), by_hour=True
                )
            ]
            for start in range(0, len(rows), 1000):
                conn.execute(rollups.insert(), rows[start : start + 1000])
            conn.execute(update(hours).where(*mine).values(computed_at=marked))


def _spans(hours: list[int]) -> list[range]:
    """Sorted hours as runs of consecutive ones: [3, 4, 5, 9] → range(3, 6), range(9, 10)."""
    spans: list[range] = []
    for hour in hours:
        if spans and spans[-1].stop == hour:
            spans[-1] = range(spans[-1].start, hour + 1)
        else:
            spans.append(range(hour, hour + 1))
    return spans


def _count(
    conn: Connection, journey: str, since: datetime | None, until: datetime | None, *, by_hour: bool
) -> list[tuple[Any, ...]]:
    """(hour or None, step, status, channel, variant, reason, count, opened, clicked) of a journey's
    deliveries made in [since, until), each delivery counted once for opened and for clicked."""
    deliveries, engagements, inbox = table(Delivery), table(Engagement), table(InboxMessage)
    mine = engagements.c.delivery_id == deliveries.c.id
    opened = or_(
        exists().where(mine, engagements.c.kind == "open"),
        exists().where(inbox.c.key == deliveries.c.key, inbox.c.read_at.is_not(None)),
    )
    clicked = exists().where(mine, engagements.c.kind == "click")
    reason = case((deliveries.c.status.in_(_UNSENT), deliveries.c.error), else_=None)
    hour = _hour_of(conn, deliveries.c.created_at)
    keys = [deliveries.c.step, deliveries.c.status, deliveries.c.channel, deliveries.c.variant, reason]
    group = [hour, *keys] if by_hour else keys
    query = (
        select(
            *group,
            func.count(),
            func.sum(case((opened, 1), else_=0)),
            func.sum(case((clicked, 1), else_=0)),
        )
        .where(deliveries.c.journey == journey, *within(deliveries.c.created_at, since, until))
        .group_by(*group)
    )
    rows = conn.execute(query).all()
    out = []
    for row in rows:
        values = list(row)
        head = [int(values.pop(0))] if by_hour else [None]
        step, status, channel, variant, why, n, o, c = values
        out.append((*head, str(step), str(status), channel, variant, why, int(n), int(o or 0), int(c or 0)))
    return out


def _hour_of(conn: Connection, column: Any) -> Any:
    return epoch_bucket(conn, column, HOUR)


def _changes(
    conn: Connection, journey: str, first: int, last: int, after: datetime
) -> list[tuple[int, datetime]]:
    """(hour, latest change) of the hours [first, last) whose deliveries changed after `after`: updated,
    opened or clicked, or read in the inbox."""
    deliveries, engagements, inbox = table(Delivery), table(Engagement), table(InboxMessage)
    span = [deliveries.c.journey == journey, *within(deliveries.c.created_at, _at(first), _at(last))]
    hour = _hour_of(conn, deliveries.c.created_at)
    queries = [
        select(hour, func.max(deliveries.c.updated_at)).where(*span, deliveries.c.updated_at > after),
        select(hour, func.max(engagements.c.at))
        .select_from(deliveries.join(engagements, engagements.c.delivery_id == deliveries.c.id))
        .where(*span, engagements.c.at > after),
        select(hour, func.max(inbox.c.read_at))
        .select_from(deliveries.join(inbox, inbox.c.key == deliveries.c.key))
        .where(*span, inbox.c.read_at > after),
    ]
    return [(int(h), changed) for query in queries for h, changed in conn.execute(query.group_by(hour))]
