"""Coupons: unique single-use codes issued once per business key, and every use of a code recorded."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from touchflow.models import Coupon, CouponRedemption, utcnow
from touchflow.storage.base import Repository, insert_ignore, locked, table

# An `order_placed` whose properties carry `coupon_code` redeems that coupon, once; an accepted redemption
# adds the derived event `coupon_redeemed` (keyed by the order the coupon was issued for) so the journey that
# issued it ends.
REDEEMING_EVENT = "order_placed"
COUPON_PROPERTY = "coupon_code"
REDEEMED_EVENT = "coupon_redeemed"
# Codes without look-alikes (0/O, 1/I/L): read aloud or typed from a phone without mistakes.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_coupon_code() -> str:
    """`TF-7KQ2-M9XD`-shaped: 40 bits of randomness from `secrets`, unique by the table's constraint."""
    body = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"TF-{body[:4]}-{body[4:]}"


class Coupons(Repository):
    def issue(
        self,
        *,
        key: str,
        customer_id: str,
        journey: str,
        entry_key: str | None,
        value: float,
        unit: str,
        expires_at: datetime,
    ) -> Coupon:
        """A new unique coupon for this business key, or the one an earlier call made for it."""
        for _ in range(5):
            row = {
                "key": key,
                "code": new_coupon_code(),
                "customer_id": customer_id,
                "journey": journey,
                "entry_key": entry_key,
                "value": value,
                "unit": unit,
                "expires_at": expires_at,
                "created_at": utcnow(),
            }
            try:
                with self.engine.begin() as conn:
                    conn.execute(table(Coupon).insert(), [row])
            except IntegrityError:
                pass  # this key was issued already (found below), or the code collided (try again)
            with self.session() as session:
                found = session.scalars(select(Coupon).where(col(Coupon.key) == key)).one_or_none()
            if found is not None:
                return found
        raise RuntimeError("could not draw a unique coupon code in 5 tries")

    def get(self, coupon_id: int) -> Coupon | None:
        with self.session() as session:
            return session.get(Coupon, coupon_id)


def redeem_coupons(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Record every coupon use of these new events; returns the `coupon_redeemed` events to add."""
    coupons = table(Coupon)
    derived: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        code = row["properties"].get(COUPON_PROPERTY)
        if row["name"] != REDEEMING_EVENT or not isinstance(code, str) or row["id"] in seen:
            continue
        seen.add(row["id"])
        code = code.strip().upper()
        order_id = row["properties"].get("order_id")
        coupon = conn.execute(locked(conn, select(coupons).where(coupons.c.code == code))).one_or_none()
        reason = None
        if coupon is None:
            reason = "unknown code"
        elif coupon.customer_id != row["customer_id"]:
            reason = "issued to another customer"
        elif coupon.redeemed_at is not None:
            reason = "already redeemed"
        elif coupon.expires_at < now:
            # Judged when the order is received: its own `timestamp` is the client's word, and a
            # backdated one must not revive an expired code.
            reason = "expired"
        else:
            # The `redeemed_at IS NULL` re-check makes two concurrent redemptions apply once.
            applied = conn.execute(
                update(coupons)
                .where(coupons.c.id == coupon.id, coupons.c.redeemed_at.is_(None))
                .values(
                    redeemed_at=now,
                    redeemed_order_id=None if order_id is None else str(order_id)[:128],
                    redeemed_event_id=row["id"],
                )
            ).rowcount
            if applied != 1:
                reason = "already redeemed"
        insert_ignore(
            conn,
            CouponRedemption,
            [
                {
                    "event_id": row["id"],
                    "code": code[:32],
                    "coupon_id": coupon.id if coupon is not None else None,
                    "customer_id": row["customer_id"],
                    "order_id": None if order_id is None else str(order_id)[:128],
                    "accepted": reason is None,
                    "reason": reason,
                    "at": now,
                }
            ],
        )
        if reason is None and coupon is not None:
            derived.append(
                {
                    "id": f"{REDEEMED_EVENT}:{coupon.id}",
                    "customer_id": row["customer_id"],
                    "name": REDEEMED_EVENT,
                    "properties": {
                        "coupon_id": coupon.id,
                        "journey": coupon.journey,
                        # The entry key of the run that issued it (the post-purchase order id).
                        "order_id": coupon.entry_key,
                        "redeemed_order_id": order_id,
                    },
                    "occurred_at": row["occurred_at"],
                    "received_at": now,
                }
            )
    return derived
