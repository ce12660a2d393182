"""Rows the tests look at (and one they set) straight in the store's tables: no product code asks for these.

Each takes the store the test has and opens a session of its own on its engine.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from touchflow.db import session_scope
from touchflow.models import Coupon, CouponRedemption, Delivery, utcnow
from touchflow.storage import Store


def coupon_by_code(store: Store, code: str) -> Coupon | None:
    with Session(store.engine) as session:
        return session.exec(select(Coupon).where(col(Coupon.code) == code.strip().upper())).one_or_none()


def coupons_of(store: Store, customer_id: str) -> list[Coupon]:
    with Session(store.engine) as session:
        stmt = select(Coupon).where(col(Coupon.customer_id) == customer_id).order_by(col(Coupon.id))
        return list(session.exec(stmt))


def coupon_redemptions(store: Store, code: str) -> list[CouponRedemption]:
    """Every use of the code, accepted or refused, in the order they were made."""
    with Session(store.engine) as session:
        stmt = (
            select(CouponRedemption)
            .where(col(CouponRedemption.code) == code.strip().upper())
            .order_by(col(CouponRedemption.id))
        )
        return list(session.exec(stmt))


def update_delivery(store: Store, delivery_id: int, **values: Any) -> Delivery:
    """Set fields of a delivery row, as if an attempt had got that far."""
    with session_scope(store.engine) as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            raise LookupError(f"delivery {delivery_id} not found")
        for field, value in values.items():
            setattr(delivery, field, value)
        delivery.updated_at = utcnow()
        session.add(delivery)
    return delivery
