"""What keeps the journey map fast over millions of deliveries: per-hour rollups of a journey's runs and
deliveries, kept in tables and brought up to date on read (attributions are kept alike: `storage.insight`).

An hour of a journey is counted once: its deliveries (by creation) into `funnel_rollups`, its runs (by entry,
with their status now) into `entry_rollups`, and the hour marked with when (`funnel_rollup_hours`). A delivery
of that hour updated since (its `updated_at`), an open, click or inbox read recorded since, or a run of that
hour that began or ended since, makes the hour stale: it is counted again on the next read. The hours at the
edges of a period, and the current one, are always counted live. So a read equals counting the rows
themselves, as long as every write to a delivery sets `updated_at` (storage.deliveries and storage.erasure
do) and a run's status changes only as it ends (storage.journeys).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import case, delete, exists, func, or_, select, update
from sqlalchemy.engine import Connection

from touchflow.models import (
    Delivery,
    DeliveryStatus,
    Engagement,
    EntryRollup,
    FunnelRollup,
    FunnelRollupHour,
    InboxMessage,
    JourneyEntry,
    utcnow,
)
from touchflow.storage.base import Repository, epoch_bucket, insert_ignore, locked, table, within

HOUR = 3600
# Writers' clocks differ a little: an hour is marked as counted this long before it was, so a write stamped
# by a slightly slow clock still makes it stale.
CLOCK_MARGIN = timedelta(minutes=1)
# The background refresh recounts at most this many hours in one transaction (then heartbeats).
REFRESH_SPAN = 24 * 7
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


class FunnelCounts(NamedTuple):
    runs: Counter[str]  # runs entered in the period, by status
    deliveries: list[FunnelRow]  # rows of the same key may repeat: add them up


def _at(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR, UTC)


class Rollups(Repository):
    def funnel(self, journey: str, since: datetime | None, until: datetime | None) -> FunnelCounts:
        """A journey's runs entered and deliveries made in [since, until), counted: rollups for whole past
        hours, the rest live."""
        now = utcnow()
        end = min(until, now) if until is not None else now
        # Hours before the journey's first run or delivery hold nothing: none is rolled up (or marked).
        first_row = self._first(journey)
        counts = FunnelCounts(Counter(), [])
        if first_row is None:
            return counts
        start = max(since, first_row) if since is not None else first_row
        if start >= end:
            return counts
        first, last = -(-int(start.timestamp()) // HOUR), int(end.timestamp()) // HOUR
        spans = [(since, until)] if first >= last else [(since, _at(first)), (_at(last), until)]
        with self.engine.connect() as conn:
            for lo, hi in spans:
                counts.runs.update(dict(_count_runs(conn, journey, lo, hi, by_hour=False)))
                counts.deliveries.extend(
                    FunnelRow(*r[1:]) for r in _count(conn, journey, lo, hi, by_hour=False)
                )
        if first < last:
            self._rolled_up(journey, first, last, now, counts)
        return counts

    def _first(self, journey: str) -> datetime | None:
        deliveries, entries = table(Delivery), table(JourneyEntry)
        with self.engine.connect() as conn:
            found = [
                conn.scalar(select(func.min(deliveries.c.created_at)).where(deliveries.c.journey == journey)),
                conn.scalar(select(func.min(entries.c.entered_at)).where(entries.c.journey == journey)),
            ]
        times: list[datetime] = [t for t in found if t is not None]
        return min(times) if times else None

    def refresh(self, journey: str, beat: Callable[[], None] | None = None) -> int:
        """Recount a journey's stale whole past hours, as a read with no period would, without reading the
        sums: what the insight schedule runs so the first view after an import finds them current. Stale
        hours are recounted a week at a time, `beat` called after each week. Returns how many hours were
        counted again."""
        now = utcnow()
        first_row = self._first(journey)
        if first_row is None:
            return 0
        first, last = -(-int(first_row.timestamp()) // HOUR), int(now.timestamp()) // HOUR
        return self._bring_up_to_date(journey, first, last, now, beat) if first < last else 0

    def _bring_up_to_date(
        self, journey: str, first: int, last: int, now: datetime, beat: Callable[[], None] | None = None
    ) -> int:
        """Recount the hours of [first, last) never counted or changed since; returns how many."""
        hours = table(FunnelRollupHour)
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
            if beat is None:
                self._recount(journey, span, now)
                continue
            for start in range(span.start, span.stop, REFRESH_SPAN):
                self._recount(journey, range(start, min(start + REFRESH_SPAN, span.stop)), now)
                beat()
        return len(stale)

    def _rolled_up(self, journey: str, first: int, last: int, now: datetime, counts: FunnelCounts) -> None:
        rollups, runs = table(FunnelRollup), table(EntryRollup)
        self._bring_up_to_date(journey, first, last, now)
        columns = (rollups.c.step, rollups.c.status, rollups.c.channel, rollups.c.variant, rollups.c.reason)
        sums = (func.sum(c) for c in (rollups.c.count, rollups.c.opened, rollups.c.clicked))
        mine = [rollups.c.journey == journey, rollups.c.hour >= first, rollups.c.hour < last]
        with self.engine.connect() as conn:
            for s, st, ch, v, r, n, o, c in conn.execute(
                select(*columns, *sums).where(*mine).group_by(*columns)
            ):
                counts.deliveries.append(FunnelRow(str(s), str(st), ch, v, r, int(n), int(o), int(c)))
            entered = (
                select(runs.c.status, func.sum(runs.c.count))
                .where(runs.c.journey == journey, runs.c.hour >= first, runs.c.hour < last)
                .group_by(runs.c.status)
            )
            for status, n in conn.execute(entered):
                counts.runs[str(status)] += int(n)

    def _recount(self, journey: str, span: range, now: datetime) -> None:
        """Count a span of stale hours again and keep them, marked as of `now` (less the clock margin)."""
        rollups, runs, hours = table(FunnelRollup), table(EntryRollup), table(FunnelRollupHour)
        marked = now - CLOCK_MARGIN
        since, until = _at(span.start), _at(span.stop)
        with self.engine.begin() as conn:
            marks = [{"journey": journey, "hour": h, "computed_at": marked} for h in span]
            for start in range(0, len(marks), 1000):
                insert_ignore(conn, FunnelRollupHour, marks[start : start + 1000])
            # Held until this transaction ends: two processes recounting the same hours take turns.
            mine = [hours.c.journey == journey, hours.c.hour >= span.start, hours.c.hour < span.stop]
            conn.execute(locked(conn, select(hours.c.hour).where(*mine)))
            for kept in (rollups, runs):
                conn.execute(
                    delete(kept).where(
                        kept.c.journey == journey, kept.c.hour >= span.start, kept.c.hour < span.stop
                    )
                )
            names = ("hour", "step", "status", "channel", "variant", "reason", "count", "opened", "clicked")
            rows = [
                {"journey": journey, **dict(zip(names, row, strict=True))}
                for row in _count(conn, journey, since, until, by_hour=True)
            ]
            for start in range(0, len(rows), 1000):
                conn.execute(rollups.insert(), rows[start : start + 1000])
            entered = [
                {"journey": journey, "hour": hour, "status": status, "count": n}
                for hour, status, n in _count_runs(conn, journey, since, until, by_hour=True)
            ]
            for start in range(0, len(entered), 1000):
                conn.execute(runs.insert(), entered[start : start + 1000])
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


def _hour_of(conn: Connection, column: Any) -> Any:
    return epoch_bucket(conn, column, HOUR)


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
    keys = [deliveries.c.step, deliveries.c.status, deliveries.c.channel, deliveries.c.variant, reason]
    group = [_hour_of(conn, deliveries.c.created_at), *keys] if by_hour else keys
    query = (
        select(
            *group, func.count(), func.sum(case((opened, 1), else_=0)), func.sum(case((clicked, 1), else_=0))
        )
        .where(deliveries.c.journey == journey, *within(deliveries.c.created_at, since, until))
        .group_by(*group)
    )
    out = []
    for row in conn.execute(query):
        values = list(row)
        head = [int(values.pop(0))] if by_hour else [None]
        step, status, channel, variant, why, n, o, c = values
        out.append((*head, str(step), str(status), channel, variant, why, int(n), int(o or 0), int(c or 0)))
    return out


def _count_runs(
    conn: Connection, journey: str, since: datetime | None, until: datetime | None, *, by_hour: bool
) -> list[tuple[Any, ...]]:
    """([hour,] status, count) of a journey's runs entered in [since, until)."""
    entries = table(JourneyEntry)
    group = [_hour_of(conn, entries.c.entered_at), entries.c.status] if by_hour else [entries.c.status]
    query = (
        select(*group, func.count())
        .where(entries.c.journey == journey, *within(entries.c.entered_at, since, until))
        .group_by(*group)
    )
    rows = [tuple(row) for row in conn.execute(query)]
    if by_hour:
        return [(int(row[0]), str(row[1]), int(row[2])) for row in rows]
    return [(str(row[0]), int(row[1])) for row in rows]


def _changes(
    conn: Connection, journey: str, first: int, last: int, after: datetime
) -> list[tuple[int, datetime]]:
    """(hour, latest change) of the hours [first, last) whose runs or deliveries changed after `after`: a
    delivery updated, opened or clicked, read in the inbox; a run begun or ended."""
    deliveries, engagements, inbox, entries = (
        table(Delivery),
        table(Engagement),
        table(InboxMessage),
        table(JourneyEntry),
    )
    span = [deliveries.c.journey == journey, *within(deliveries.c.created_at, _at(first), _at(last))]
    hour = _hour_of(conn, deliveries.c.created_at)
    runs = [entries.c.journey == journey, *within(entries.c.entered_at, _at(first), _at(last))]
    run_hour = _hour_of(conn, entries.c.entered_at)
    queries = [
        select(hour, func.max(deliveries.c.updated_at)).where(*span, deliveries.c.updated_at > after),
        select(hour, func.max(engagements.c.at))
        .select_from(deliveries.join(engagements, engagements.c.delivery_id == deliveries.c.id))
        .where(*span, engagements.c.at > after),
        select(hour, func.max(inbox.c.read_at))
        .select_from(deliveries.join(inbox, inbox.c.key == deliveries.c.key))
        .where(*span, inbox.c.read_at > after),
    ]
    found = [(int(h), changed) for query in queries for h, changed in conn.execute(query.group_by(hour))]
    for query in (
        select(run_hour, func.max(entries.c.ended_at)).where(*runs, entries.c.ended_at > after),
        select(run_hour, func.max(entries.c.entered_at)).where(*runs, entries.c.entered_at > after),
    ):
        found.extend((int(h), changed) for h, changed in conn.execute(query.group_by(run_hour)))
    return found
