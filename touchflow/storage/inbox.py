"""The onsite inbox: messages stored per customer, read in cursor pages, marked seen, read or archived, and
polled by the live streams."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Select, and_, func, select, update
from sqlmodel import col

from touchflow.db import session_scope
from touchflow.errors import InvalidInput
from touchflow.models import InboxMessage, utcnow
from touchflow.storage.base import (
    Repository,
    insert_ignore,
    newest_first_cursor,
    older_than_cursor,
    table,
)

InboxMark = Literal["seen", "read", "archived"]
INBOX_PAGE_MAX = 100


@dataclass(frozen=True)
class InboxSlice:
    """One page of a customer's inbox, newest first; `next_cursor` opens the older page after it."""

    messages: list[InboxMessage]
    next_cursor: str | None


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


class InboxMessages(Repository):
    def add(
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
            insert_ignore(conn, InboxMessage, [row])
        with self.session() as session:
            return session.scalars(select(InboxMessage).where(col(InboxMessage.key) == key)).one()

    def after(self, customer_id: str, after_id: int, limit: int = INBOX_PAGE_MAX) -> list[InboxMessage]:
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

    def latest_id(self, customer_id: str | None = None) -> int:
        """The newest message id of the customer (of anyone's, without one), 0 for none."""
        stmt = select(func.max(col(InboxMessage.id)))
        if customer_id is not None:
            stmt = stmt.where(col(InboxMessage.customer_id) == customer_id)
        with self.engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)

    def unread_count(self, customer_id: str) -> int:
        """Unread (neither read nor archived) messages of the customer."""
        with self.engine.connect() as conn:
            counted = conn.execute(_unread_counts([customer_id])).one_or_none()
        return 0 if counted is None else int(counted[1])

    def news(
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

    def mark(self, customer_id: str, message_id: int, mark: InboxMark) -> InboxMessage | None:
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

    def read_all(self, customer_id: str) -> int:
        """Mark every unread, unarchived message of the customer read (and seen); returns how many changed."""
        now = utcnow()
        inbox = table(InboxMessage)
        where = and_(
            inbox.c.customer_id == customer_id, inbox.c.read_at.is_(None), inbox.c.archived_at.is_(None)
        )
        with self.engine.begin() as conn:
            conn.execute(update(inbox).where(where, inbox.c.seen_at.is_(None)).values(seen_at=now))
            result = conn.execute(update(inbox).where(where).values(read_at=now))
        return int(result.rowcount)

    # Last of the class: below it, `list[...]` in a signature would name this method, not the builtin.
    def list(
        self, customer_id: str, *, limit: int = 20, cursor: str | None = None, archived: bool = False
    ) -> InboxSlice:
        """A page of messages, newest first: the archived ones when `archived`, else the others.

        Raises InvalidInput (naming `limit` or `cursor`) for a limit outside 1..100 or a cursor not made here.
        """
        if not 1 <= limit <= INBOX_PAGE_MAX:
            raise InvalidInput(f"limit: must be between 1 and {INBOX_PAGE_MAX}")
        archived_at = col(InboxMessage.archived_at)
        stmt = select(InboxMessage).where(
            col(InboxMessage.customer_id) == customer_id,
            archived_at.is_not(None) if archived else archived_at.is_(None),
        )
        if cursor is not None:
            stmt = stmt.where(
                older_than_cursor(cursor, col(InboxMessage.created_at), col(InboxMessage.id), int)
            )
        stmt = stmt.order_by(col(InboxMessage.created_at).desc(), col(InboxMessage.id).desc())
        with self.session() as session:
            rows = [*session.scalars(stmt.limit(limit + 1))]
        more = len(rows) > limit
        rows = rows[:limit]
        return InboxSlice(rows, newest_first_cursor(rows[-1].created_at, rows[-1].id) if more else None)
