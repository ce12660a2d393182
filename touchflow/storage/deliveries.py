"""Deliveries: one row per message a step sends, claimed once per business key and sent under a lease whose
token fences the result; the suppression list; opens, clicks and provider receipts. Journey funnels count them
through `storage.rollups`: every write here that changes what a funnel counts sets `updated_at`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlmodel import col

from touchflow.db import address_hash, session_scope
from touchflow.models import Delivery, DeliveryStatus, Engagement, InboxMessage, Suppression, utcnow
from touchflow.storage.base import Repository, insert_ignore, table
from touchflow.storage.segments import Segments


class Deliveries(Repository):
    def __init__(self, engine: Engine, segments: Segments | None = None) -> None:
        super().__init__(engine)
        # Segments that read reachability move when an address is suppressed, in the same transaction.
        self.segments = segments

    def claim(self, delivery: Delivery) -> Delivery:
        """Insert the delivery row for its business key, or return the row an earlier attempt made."""
        with self.engine.begin() as conn:
            row = delivery.model_dump(exclude={"id"})
            insert_ignore(conn, Delivery, [row])
        with self.session() as session:
            stored = session.scalars(select(Delivery).where(col(Delivery.key) == delivery.key)).one()
        return stored

    def claim_many(self, rows: list[dict[str, Any]]) -> dict[str, Delivery]:
        """`claim` for many business keys in one statement each way (a broadcast's batch): by key."""
        if not rows:
            return {}
        with self.engine.begin() as conn:
            insert_ignore(conn, Delivery, rows)
        keys = [row["key"] for row in rows]
        with self.session() as session:
            stored = session.scalars(select(Delivery).where(col(Delivery.key).in_(keys)))
            return {d.key: d for d in stored}

    # -- the send lease --------------------------------------------------------------------------------------

    def start_sending(self, delivery_id: int, lease: timedelta) -> tuple[int | None, bool]:
        """Take the delivery's send lease: (token, interrupted); token None when not taken.

        Not taken: another attempt holds a live lease (it is sending right now). Interrupted: an earlier
        attempt took the lease and never finished (its worker died mid-send): whether that message went out
        is unknown, so the caller records it and sends again under the same provider idempotency handle.
        The token fences the result: only the attempt holding the newest lease may record it.
        """
        return self.start_sending_many([delivery_id], lease)[0]

    def start_sending_many(
        self, delivery_ids: Sequence[int], lease: timedelta
    ) -> list[tuple[int | None, bool]]:
        """`start_sending` for many deliveries in one transaction (the sends of one moment, together), in
        order; an id given twice is taken once, by its first mention."""
        if not delivery_ids:
            return []
        now = utcnow()
        deliveries = table(Delivery)
        ids = sorted(set(delivery_ids))
        with self.engine.begin() as conn:
            found = select(deliveries.c.id, deliveries.c.sending_until).where(deliveries.c.id.in_(ids))
            before = {delivery_id: until for delivery_id, until in conn.execute(found)}
            tokens = {
                delivery_id: token
                for delivery_id, token in conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_(ids),
                        or_(deliveries.c.sending_until.is_(None), deliveries.c.sending_until <= now),
                    )
                    .values(sending_until=now + lease, send_token=deliveries.c.send_token + 1)
                    .returning(deliveries.c.id, deliveries.c.send_token)
                )
            }
        taken: list[tuple[int | None, bool]] = []
        for delivery_id in delivery_ids:
            token = tokens.pop(delivery_id, None)
            taken.append((token, token is not None and before.get(delivery_id) is not None))
        return taken

    def renew_lease(self, delivery_id: int, token: int, lease: timedelta) -> bool:
        """Extend a live lease from now (an attempt's heartbeat); False when it is no longer this token's."""
        deliveries = table(Delivery)
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.send_token == token,
                    deliveries.c.sending_until.is_not(None),
                )
                .values(sending_until=utcnow() + lease)
            ).rowcount
        return bool(renewed)

    def finish_sending(self, delivery_id: int, token: int, **values: Any) -> Delivery | None:
        """Record an attempt's result and release its lease (`sending_until` given: leave it at that), only if
        the lease is still `token`'s.

        None when a later attempt took the lease meanwhile: that attempt's result stands, this one is dropped.
        """
        return self.finish_sending_many([(delivery_id, token, values)])[0]

    def finish_sending_many(
        self, results: Sequence[tuple[int, int, dict[str, Any]]]
    ) -> list[Delivery | None]:
        """`finish_sending` for many (delivery id, token, values) in one transaction, in order."""
        deliveries = table(Delivery)
        recorded: list[Delivery | None] = []
        with self.engine.begin() as conn:
            for delivery_id, token, values in results:
                row = conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id, deliveries.c.send_token == token)
                    .values(**{"sending_until": None, **values}, updated_at=utcnow())
                    .returning(*deliveries.c)
                ).one_or_none()
                recorded.append(None if row is None else Delivery.model_validate(row._mapping))
        return recorded

    def marketing_sent_counts(
        self, customer_ids: Sequence[str], window: timedelta, channel: str | None = None
    ) -> list[int]:
        """For each customer (in order): marketing deliveries sent to them within `window` until now, or
        being sent right now (on `channel`, or any). One query for all (the sends of one moment)."""
        deliveries = table(Delivery)
        now = utcnow()
        conditions = [
            deliveries.c.customer_id.in_(sorted(set(customer_ids))),
            deliveries.c.marketing.is_(True),
            or_(deliveries.c.sent_at >= now - window, deliveries.c.sending_until > now),
        ]
        if channel is not None:
            conditions.append(deliveries.c.channel == channel)
        query = select(deliveries.c.customer_id, func.count()).where(*conditions)
        with self.engine.connect() as conn:
            counts = {c: n for c, n in conn.execute(query.group_by(deliveries.c.customer_id))}
        return [int(counts.get(customer_id, 0)) for customer_id in customer_ids]

    # -- suppressions ----------------------------------------------------------------------------------------

    def suppress(self, channel: str, address: str, reason: str, customer_id: str | None = None) -> None:
        """Never use this address on this channel again (kept as a hash: the list itself holds no PII).
        `customer_id`, whose address it is, leaves the segments that need them reachable there at once
        (anyone else with the address, at the next refresh)."""
        now = utcnow()
        with self.engine.begin() as conn:
            added = insert_ignore(
                conn,
                Suppression,
                [
                    {
                        "channel": channel,
                        "address_hash": address_hash(address),
                        "reason": reason[:300],
                        "created_at": now,
                    }
                ],
                returning=table(Suppression).c.address_hash,
            )
            if added and customer_id is not None and self.segments is not None:
                self.segments.on_profile(conn, [customer_id], now)

    def is_suppressed(self, channel: str, address: str) -> bool:
        return self.suppressed_among([(channel, address)])[0]

    def suppressed_among(self, addresses: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (channel, address), in order: whether it is suppressed. One query for all."""
        suppressions = table(Suppression)
        hashes = [(channel, address_hash(address)) for channel, address in addresses]
        query = select(suppressions.c.channel, suppressions.c.address_hash).where(
            suppressions.c.address_hash.in_(sorted({h for _, h in hashes}))
        )
        with self.engine.connect() as conn:
            found = {(channel, digest) for channel, digest in conn.execute(query)}
        return [pair in found for pair in hashes]

    # -- what came of a delivery -----------------------------------------------------------------------------

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

    def record_engagement(self, delivery_id: int, kind: str, url: str | None = None) -> bool:
        """Record an open or a click; False when there is no such delivery (erased, or a stale link).

        A delivery is opened once: a pixel fetched again (mail clients and proxies do) adds nothing, by the
        table's unique index on opens. Every click is kept.
        """
        deliveries = table(Delivery)
        with self.engine.begin() as conn:
            exists = conn.execute(select(deliveries.c.id).where(deliveries.c.id == delivery_id)).first()
            if exists is None:
                return False
            row = {"delivery_id": delivery_id, "kind": kind, "url": url, "at": utcnow()}
            insert_ignore(conn, Engagement, [row])
        return True

    # -- reads for a customer's page and a journey's funnel --------------------------------------------------

    def of_customer(self, customer_id: str, limit: int = 50) -> list[Delivery]:
        """The customer's latest deliveries, newest first."""
        with self.session() as session:
            stmt = (
                select(Delivery)
                .where(col(Delivery.customer_id) == customer_id)
                .order_by(col(Delivery.created_at).desc(), col(Delivery.id).desc())
                .limit(limit)
            )
            return list(session.scalars(stmt))

    def engagement_counts(self, journey: str, since: datetime | None = None) -> dict[str, tuple[int, int]]:
        """Per step: (deliveries opened, deliveries clicked), each delivery counted once.

        An onsite message read in the inbox counts as opened.
        """
        deliveries, engagements, inbox = table(Delivery), table(Engagement), table(InboxMessage)
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
