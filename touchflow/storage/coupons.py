"""Coupons: unique single-use codes issued once per business key; redeemed once, and every use recorded, by
the ingest's redemption rule (`touchflow.ingest_rules`) through the primitives below, on its connection."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from touchflow.models import Coupon, CouponRedemption, utcnow
from touchflow.storage.base import Repository, insert_ignore, locked, table

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


def locked_by_code(conn: Connection, code: str) -> Coupon | None:
    """The coupon of this code, held until `conn`'s transaction ends (`locked`)."""
    coupons = table(Coupon)
    row = conn.execute(locked(conn, select(coupons).where(coupons.c.code == code))).one_or_none()
    return None if row is None else Coupon.model_validate(row._mapping)


def mark_redeemed(
    conn: Connection, coupon: Coupon, at: datetime, *, order_id: str | None, event_id: str
) -> bool:
    """Mark the coupon redeemed unless it is already; True when this call did.

    The `redeemed_at IS NULL` re-check makes two concurrent redemptions apply once.
    """
    coupons = table(Coupon)
    applied = conn.execute(
        update(coupons)
        .where(coupons.c.id == coupon.id, coupons.c.redeemed_at.is_(None))
        .values(
            redeemed_at=at,
            redeemed_order_id=None if order_id is None else order_id[:128],
            redeemed_event_id=event_id,
        )
    ).rowcount
    return bool(applied == 1)


def record_redemption(conn: Connection, redemption: CouponRedemption) -> None:
    """Keep one use of a code, accepted or refused; once per event (its unique `event_id`)."""
    row = redemption.model_dump(exclude={"id"})
    # A client's code or order id may be longer than its column: keep what fits.
    row["code"] = redemption.code[:32]
    row["order_id"] = None if redemption.order_id is None else redemption.order_id[:128]
    insert_ignore(conn, CouponRedemption, [row])
