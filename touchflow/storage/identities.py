"""Identity: an anonymous visitor (`anon:<anonymousId>`) merged into the known customer they turn out to be,
and the link that sends what still names the visitor to that customer afterwards.

A merge is one transaction and idempotent: the visitor's events, queued events, inbox, devices, journey
entries, deliveries and coupons become the customer's; attributes and consents fill in what the customer's
profile lacks (the known profile wins); the visitor's profile goes and an `identities` row stays. Two known
customers are never merged: only an anonymous id merges, and only into one customer.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, or_, select, update

from touchflow.db import read_modify_write
from touchflow.models import (
    ANONYMOUS_PREFIX,
    Attribution,
    Coupon,
    CouponRedemption,
    Customer,
    Delivery,
    Event,
    Identity,
    InboxMessage,
    JourneyEntry,
    JourneyStatus,
    OutboxEntry,
    PushSubscription,
    SegmentMembership,
    SegmentMovement,
    is_anonymous,
    utcnow,
)
from touchflow.storage.base import Repository, insert_ignore, locked, table
from touchflow.storage.customers import bare_customer, known_ids

__all__ = ["FOLLOWING", "Identities", "Merged", "known_ids"]

# Rows that follow the person from the visitor's profile to the customer's.
FOLLOWING: tuple[Any, ...] = (
    Event,
    Attribution,  # with its event (its credit stays as decided when it was kept)
    OutboxEntry,
    InboxMessage,
    PushSubscription,
    JourneyEntry,
    Delivery,
    Coupon,
    CouponRedemption,
    SegmentMembership,
    SegmentMovement,
)
_PROFILE_FIELDS = ("email", "phone", "locale", "timezone")


class Merged(StrEnum):
    MERGED = "merged"  # the visitor's profile and history are the customer's now
    ALREADY = "already"  # merged before (a resent identify): nothing new
    REFUSED = "refused"  # the anonymous id is another customer's already, or the target is no known id


class Identities(Repository):
    def merge(self, anonymous_id: str, customer_id: str) -> Merged:
        """Fold the visitor `anonymous_id` into the known customer `customer_id` (created if new).

        Safe when two requests race: the visitor's profile is locked first (`FOR UPDATE`; on SQLite the
        transaction holds the write lock from its start), so the second merge waits and finds it done.
        Merging again re-homes whatever still names the visitor (an event stored under the anonymous id by a
        request that began before the merge), so a repeat heals rather than refuses.
        """
        if not is_anonymous(anonymous_id) or is_anonymous(customer_id) or anonymous_id == customer_id:
            return Merged.REFUSED
        customers, identities = table(Customer), table(Identity)
        now = utcnow()
        with read_modify_write(self.engine) as conn:
            visitor = conn.execute(
                locked(conn, select(customers).where(customers.c.id == anonymous_id))
            ).first()
            merged_into = conn.scalar(
                select(identities.c.customer_id).where(identities.c.anonymous_id == anonymous_id)
            )
            if merged_into is not None and merged_into != customer_id:
                return Merged.REFUSED
            insert_ignore(conn, Customer, [bare_customer(customer_id, now)])
            known = conn.execute(locked(conn, select(customers).where(customers.c.id == customer_id))).one()
            if visitor is not None:
                conn.execute(
                    update(customers)
                    .where(customers.c.id == customer_id)
                    .values(_filled_in(known, visitor, now))
                )
            # A segment both are in keeps the customer's membership (its key is segment and customer).
            members = table(SegmentMembership)
            theirs = select(members.c.segment).where(members.c.customer_id == customer_id)
            conn.execute(
                members.delete().where(members.c.customer_id == anonymous_id, members.c.segment.in_(theirs))
            )
            for model in FOLLOWING:
                rows = table(model)
                conn.execute(
                    update(rows).where(rows.c.customer_id == anonymous_id).values(customer_id=customer_id)
                )
            if visitor is not None:
                conn.execute(customers.delete().where(customers.c.id == anonymous_id))
            insert_ignore(
                conn, Identity, [{"anonymous_id": anonymous_id, "customer_id": customer_id, "merged_at": now}]
            )
        return Merged.MERGED if merged_into is None else Merged.ALREADY

    def known_as(self, anonymous_id: str) -> str | None:
        """The customer an anonymous id was merged into, if it was."""
        with self.engine.connect() as conn:
            return known_ids(conn, [anonymous_id]).get(anonymous_id)

    def anonymous_ids_of(self, customer_id: str) -> list[str]:
        """The anonymous ids merged into this customer, in id order (one indexed read)."""
        identities = table(Identity)
        query = select(identities.c.anonymous_id).where(identities.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return list(conn.scalars(query.order_by(identities.c.anonymous_id)))

    def stale_visitors(self, last_seen_before: datetime, limit: int = 500) -> list[str]:
        """Anonymous profiles not seen since `last_seen_before` and in no running journey: what
        TOUCHFLOW_ANONYMOUS_TTL removes. Seen is an event received, a profile change, a push subscription
        saved or pushed to, an inbox message seen, read or archived."""
        customers, events, entries = table(Customer), table(Event), table(JourneyEntry)
        devices, inbox = table(PushSubscription), table(InboxMessage)
        since = last_seen_before
        seen_since = or_(
            exists().where(and_(events.c.customer_id == customers.c.id, events.c.received_at >= since)),
            exists().where(
                and_(
                    devices.c.customer_id == customers.c.id,
                    or_(devices.c.updated_at >= since, devices.c.last_success_at >= since),
                )
            ),
            exists().where(
                and_(
                    inbox.c.customer_id == customers.c.id,
                    or_(inbox.c.seen_at >= since, inbox.c.read_at >= since, inbox.c.archived_at >= since),
                )
            ),
        )
        running = exists().where(
            and_(entries.c.customer_id == customers.c.id, entries.c.status == JourneyStatus.ACTIVE)
        )
        query = (
            select(customers.c.id)
            .where(customers.c.id.startswith(ANONYMOUS_PREFIX, autoescape=True))
            .where(customers.c.updated_at < last_seen_before, ~seen_since, ~running)
            .order_by(customers.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))


def _filled_in(known: Any, visitor: Any, now: datetime) -> dict[str, Any]:
    """The customer's profile with the gaps filled from the visitor's: what the customer said wins."""
    values: dict[str, Any] = {"updated_at": now}
    for field in _PROFILE_FIELDS:
        if getattr(known, field) is None and getattr(visitor, field) is not None:
            values[field] = getattr(visitor, field)
    values["attributes"] = {**visitor.attributes, **known.attributes}
    values["consents"] = {**visitor.consents, **known.consents}
    return values
