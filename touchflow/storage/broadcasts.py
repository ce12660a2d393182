"""Broadcasts: the broadcast rows, the audience snapshot (who, when, which batch) and what came of it,
counted from the deliveries each recipient has (`deliveries.journey` is `broadcast:<id>`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlmodel import col

from touchflow.errors import NotFound
from touchflow.models import (
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    Customer,
    Delivery,
    utcnow,
)
from touchflow.storage.base import (
    Repository,
    insert_ignore,
    newest_first_cursor,
    older_than_cursor,
    table,
)
from touchflow.storage.segments import Segments


def delivery_journey(broadcast_id: str) -> str:
    """What a broadcast's deliveries carry as their journey: its funnel and counts read by it."""
    return f"broadcast:{broadcast_id}"


def audience_page(segments: Segments, segment: str, after: str | None, limit: int) -> list[str]:
    """A page of a segment's members (customer ids in id order, after the cursor `after`); NotFound for a
    segment nobody defined."""
    if segments.get(segment) is None:
        raise NotFound(
            f"no segment named {segment!r}: define it first (POST /v1/segments) or send to customer_ids"
        )
    return segments.member_ids(segment, after, limit)


class Broadcasts(Repository):
    def create(self, broadcast: Broadcast) -> Broadcast:
        with self.session() as session:
            session.add(broadcast)
            session.commit()
            session.refresh(broadcast)
        return broadcast

    def get(self, broadcast_id: str) -> Broadcast | None:
        with self.session() as session:
            return session.get(Broadcast, broadcast_id)

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[Broadcast], str | None]:
        """A page of broadcasts, newest first, and the cursor of the next (older) page, None on the last."""
        query = select(Broadcast)
        if cursor is not None:
            query = query.where(older_than_cursor(cursor, col(Broadcast.created_at), col(Broadcast.id)))
        query = query.order_by(col(Broadcast.created_at).desc(), col(Broadcast.id).desc()).limit(limit + 1)
        with self.session() as session:
            rows = list(session.scalars(query))
        if len(rows) <= limit:
            return rows, None
        return rows[:limit], newest_first_cursor(rows[limit - 1].created_at, rows[limit - 1].id)

    def delete(self, broadcast_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(table(BroadcastRecipient)).where(
                    table(BroadcastRecipient).c.broadcast_id == broadcast_id
                )
            )
            conn.execute(delete(table(Broadcast)).where(table(Broadcast).c.id == broadcast_id))

    def set_status(self, broadcast_id: str, status: BroadcastStatus) -> None:
        broadcasts = table(Broadcast)
        with self.engine.begin() as conn:
            conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast_id)
                .values(status=status, updated_at=utcnow())
            )

    # -- the snapshot ----------------------------------------------------------------------------------------

    def clear_snapshot(self, broadcast_id: str) -> None:
        """Forget a snapshot half taken (its activity died): nothing was sent from it yet."""
        recipients = table(BroadcastRecipient)
        with self.engine.begin() as conn:
            conn.execute(delete(recipients).where(recipients.c.broadcast_id == broadcast_id))

    def timezones(self, customer_ids: list[str]) -> dict[str, str | None]:
        """The time zone of each existing customer of `customer_ids` (absent ones are left out)."""
        customers = table(Customer)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(customers.c.id, customers.c.timezone).where(customers.c.id.in_(customer_ids))
            ).all()
        return {str(i): tz for i, tz in rows}

    def add_recipients(self, broadcast_id: str, rows: Iterable[tuple[str, datetime, int]]) -> None:
        """(customer_id, due_at, batch) rows of the snapshot; a customer already in it keeps their row."""
        values = [
            {"broadcast_id": broadcast_id, "customer_id": c, "due_at": due, "batch": b} for c, due, b in rows
        ]
        with self.engine.begin() as conn:
            insert_ignore(conn, BroadcastRecipient, values)

    def finish_snapshot(self, broadcast_id: str) -> int:
        """Record the snapshot as taken; its size."""
        recipients, broadcasts = table(BroadcastRecipient), table(Broadcast)
        with self.engine.begin() as conn:
            total = int(
                conn.scalar(
                    select(func.count())
                    .select_from(recipients)
                    .where(recipients.c.broadcast_id == broadcast_id)
                )
                or 0
            )
            conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast_id)
                .values(total=total, updated_at=utcnow())
            )
        return total

    def slots(self, broadcast_id: str) -> list[tuple[datetime, int]]:
        """(due_at, number of batches) of the snapshot, earliest first."""
        recipients = table(BroadcastRecipient)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(recipients.c.due_at, func.max(recipients.c.batch))
                .where(recipients.c.broadcast_id == broadcast_id)
                .group_by(recipients.c.due_at)
                .order_by(recipients.c.due_at)
            ).all()
        return [(due, int(last) + 1) for due, last in rows]

    def batch(self, broadcast_id: str, due_at: datetime, batch: int) -> list[str]:
        """The customer ids of one batch, in id order."""
        recipients = table(BroadcastRecipient)
        with self.engine.connect() as conn:
            rows = conn.scalars(
                select(recipients.c.customer_id)
                .where(
                    recipients.c.broadcast_id == broadcast_id,
                    recipients.c.due_at == due_at,
                    recipients.c.batch == batch,
                )
                .order_by(recipients.c.customer_id)
            ).all()
        return [str(r) for r in rows]

    def recipients(
        self, broadcast_id: str, after: str | None = None, limit: int = 1000
    ) -> list[BroadcastRecipient]:
        """A page of the snapshot in customer id order, after the cursor `after`."""
        with self.session() as session:
            query = select(BroadcastRecipient).where(col(BroadcastRecipient.broadcast_id) == broadcast_id)
            if after is not None:
                query = query.where(col(BroadcastRecipient.customer_id) > after)
            return list(session.scalars(query.order_by(col(BroadcastRecipient.customer_id)).limit(limit)))

    # -- what came of it -------------------------------------------------------------------------------------

    def outcome_counts(self, broadcast_id: str) -> list[tuple[str, str | None, int]]:
        """(delivery status, reason, count) of the broadcast's deliveries."""
        return self.outcomes([broadcast_id])[broadcast_id]

    def outcomes(self, broadcast_ids: Sequence[str]) -> dict[str, list[tuple[str, str | None, int]]]:
        """`outcome_counts` of several broadcasts (a page of the list) in one query."""
        deliveries = table(Delivery)
        journeys = {delivery_journey(b): b for b in broadcast_ids}
        found: dict[str, list[tuple[str, str | None, int]]] = {b: [] for b in broadcast_ids}
        columns = (deliveries.c.journey, deliveries.c.status, deliveries.c.error)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*columns, func.count())
                .where(deliveries.c.journey.in_(list(journeys)))
                .group_by(*columns)
            ).all()
        for journey, state, reason, n in rows:
            found[journeys[journey]].append((str(state), reason, int(n)))
        return found
