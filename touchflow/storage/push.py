"""Web push subscriptions: one row per browser a customer allowed to notify them, keyed by its endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlmodel import col

from touchflow.db import read_modify_write
from touchflow.models import Customer, PushSubscription, PushSubscriptionIn, utcnow
from touchflow.storage.base import Repository, insert_ignore, table
from touchflow.storage.customers import bare_customer, current_id

# Browsers and devices one customer may have subscribed; one step pushes to each of them.
PUSH_SUBSCRIPTIONS_PER_CUSTOMER = 20


class PushSubscriptions(Repository):
    def save(self, customer_id: str, data: PushSubscriptionIn) -> tuple[PushSubscription, bool]:
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
        values: dict[str, Any] = {
            "p256dh": data.keys.p256dh,
            "auth": data.keys.auth,
            "user_agent": data.user_agent,
            "expires_at": expires_at,
            "updated_at": now,
            "failures": 0,
        }
        subscriptions = table(PushSubscription)
        with read_modify_write(self.engine) as conn:
            # Under a merged visitor's id the browser is the customer's (no merged-away profile comes back).
            customer_id = values["customer_id"] = current_id(conn, customer_id)
            insert_ignore(conn, Customer, [bare_customer(customer_id, now)])
            # Insert-or-ignore, then update: safe when two requests carry the same endpoint at once.
            created = insert_ignore(
                conn,
                PushSubscription,
                [{**values, "endpoint": data.endpoint, "created_at": now}],
                returning=subscriptions.c.id,
            )
            if not created:
                conn.execute(
                    update(subscriptions).where(subscriptions.c.endpoint == data.endpoint).values(**values)
                )
            beyond = conn.scalars(
                select(subscriptions.c.id)
                .where(subscriptions.c.customer_id == customer_id)
                .order_by(subscriptions.c.updated_at.desc(), subscriptions.c.id.desc())
                .offset(PUSH_SUBSCRIPTIONS_PER_CUSTOMER)
            ).all()
            if beyond:
                conn.execute(delete(subscriptions).where(subscriptions.c.id.in_(beyond)))
        with self.session() as session:
            row = session.scalars(
                select(PushSubscription).where(col(PushSubscription.endpoint) == data.endpoint)
            ).one()
        return row, bool(created)

    def of_customer(self, customer_id: str) -> list[PushSubscription]:
        with self.session() as session:
            stmt = (
                select(PushSubscription)
                .where(col(PushSubscription.customer_id) == customer_id)
                .order_by(col(PushSubscription.id))
            )
            return list(session.scalars(stmt))

    def delete(self, customer_id: str, endpoint: str) -> bool:
        """Forget one of a customer's subscriptions (the browser unsubscribed); False when there was none."""
        subscriptions = table(PushSubscription)
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.customer_id == customer_id, subscriptions.c.endpoint == endpoint
                )
            )
        return bool(result.rowcount)

    def record_result(self, subscription_id: int, *, ok: bool, gone: bool = False) -> None:
        """After a send: a success resets the failure count, a failure adds one, `gone` deletes the row."""
        subscriptions = table(PushSubscription)
        where = subscriptions.c.id == subscription_id
        with self.engine.begin() as conn:
            if gone:
                conn.execute(delete(subscriptions).where(where))
            elif ok:
                conn.execute(update(subscriptions).where(where).values(last_success_at=utcnow(), failures=0))
            else:
                conn.execute(update(subscriptions).where(where).values(failures=subscriptions.c.failures + 1))
