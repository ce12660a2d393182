"""What some events mean beyond being stored: the rules ingest applies to the events it stores, inside its own
transaction, so what a rule does commits or rolls back with the events, whatever runs or retries.

- `unsubscribed` withdraws a consent;
- `order_placed` carrying `coupon_code` redeems that coupon, once, and adds the event `coupon_redeemed`;
- every event may move its customer into or out of segments (`touchflow.segments`): each move is recorded,
  and one a journey starts or ends on adds the event `segment_entered:<name>` / `segment_exited:<name>`.

Storage knows none of these names: it hands each rule the new events and an `IngestTransaction`, a few
primitives on the ingest's connection, and stores (and relays) the events a rule returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from touchflow.models import Coupon, CouponRedemption, EventIn
from touchflow.segments import Move, segment_event_id

UNSUBSCRIBED = "unsubscribed"
# An `order_placed` whose properties carry `coupon_code` redeems that coupon, once; an accepted redemption
# adds the derived event `coupon_redeemed` (keyed by the order the coupon was issued for) so the journey that
# issued it ends.
REDEEMING_EVENT = "order_placed"
COUPON_PROPERTY = "coupon_code"
REDEEMED_EVENT = "coupon_redeemed"


class IngestTransaction(Protocol):
    """What a rule may read and write, on the ingest's connection (`storage.events` provides it)."""

    @property
    def now(self) -> datetime:
        """When the events were received."""
        ...

    def merge_consents(self, customer_id: str, changes: dict[str, bool]) -> None:
        """Merge consent changes into the customer's, in one statement (a concurrent change is kept)."""
        ...

    def coupon_to_redeem(self, code: str) -> Coupon | None:
        """The coupon of this code, held (on PostgreSQL, locked) until the ingest commits."""
        ...

    def redeem_coupon(self, coupon: Coupon, *, order_id: str | None, event_id: str) -> bool:
        """Mark the coupon redeemed by this order, unless it is already; True when this call did."""
        ...

    def record_redemption(self, redemption: CouponRedemption) -> None:
        """Keep one use of a code, accepted or refused (once per event)."""
        ...

    @property
    def relayed(self) -> frozenset[str]:
        """The event names some journey starts on, ends on or listens to."""
        ...

    def move_segments(self, events: Sequence[EventIn]) -> list[Move]:
        """Bring the memberships these events may change up to date (for their customers; every segment for
        the customers this ingest created), recording each entry and exit."""
        ...


# Given the new events (each once, as stored, in the order they came), a rule returns the events it derives.
IngestRule = Callable[[IngestTransaction, Sequence[EventIn]], list[EventIn]]


def redeem_coupons(tx: IngestTransaction, events: Sequence[EventIn]) -> list[EventIn]:
    """Record every coupon use of these events; returns the `coupon_redeemed` event of each accepted one."""
    derived: list[EventIn] = []
    for event in events:
        code = event.properties.get(COUPON_PROPERTY)
        if event.name != REDEEMING_EVENT or not isinstance(code, str):
            continue
        code = code.strip().upper()
        order_id = event.properties.get("order_id")
        order = None if order_id is None else str(order_id)
        coupon = tx.coupon_to_redeem(code)
        reason = _refusal(coupon, event.customer_id, tx.now)
        if (
            reason is None
            and coupon is not None
            and not tx.redeem_coupon(coupon, order_id=order, event_id=event.id)
        ):
            reason = "already redeemed"  # by a concurrent order, between the read and the write
        tx.record_redemption(
            CouponRedemption(
                event_id=event.id,
                code=code,
                coupon_id=None if coupon is None else coupon.id,
                customer_id=event.customer_id,
                order_id=order,
                accepted=reason is None,
                reason=reason,
                at=tx.now,
            )
        )
        if reason is None and coupon is not None:
            # Made by the engine from what is stored: nothing a client sent, so nothing to validate.
            redeemed = EventIn.model_construct(
                id=f"{REDEEMED_EVENT}:{coupon.id}",
                customer_id=event.customer_id,
                name=REDEEMED_EVENT,
                properties={
                    "coupon_id": coupon.id,
                    "journey": coupon.journey,
                    # The entry key of the run that issued it (the post-purchase order id).
                    "order_id": coupon.entry_key,
                    "redeemed_order_id": order_id,
                },
                timestamp=event.timestamp,  # when the order was placed, as the order itself says
            )
            derived.append(redeemed)
    return derived


def _refusal(coupon: Coupon | None, customer_id: str, now: datetime) -> str | None:
    """Why an order of this customer, received `now`, may not use the coupon; None when it may."""
    if coupon is None:
        return "unknown code"
    if coupon.customer_id != customer_id:
        return "issued to another customer"
    if coupon.redeemed_at is not None:
        return "already redeemed"
    if coupon.expires_at < now:
        # Judged when the order is received: its own `timestamp` is the client's word, and a backdated one
        # must not revive an expired code.
        return "expired"
    return None


def withdraw_consents(tx: IngestTransaction, events: Sequence[EventIn]) -> list[EventIn]:
    """Each `unsubscribed` event turns a consent off (`_consent_key`)."""
    # In customer id order, as ingest creates unknown customers: two batches that lock the same customers
    # lock them in one order, and never deadlock.
    for event in sorted(events, key=lambda event: event.customer_id):
        if event.name == UNSUBSCRIBED:
            tx.merge_consents(event.customer_id, {_consent_key(event.properties): False})
    return []


def _consent_key(properties: dict[str, Any]) -> str:
    """The consent an unsubscribe names: `{"channel": "email"}` → `email.marketing`, `{"topic": "all"}` →
    every message, no properties → all marketing."""
    channel = properties.get("channel")
    topic = str(properties.get("topic") or "marketing")
    return "all" if topic == "all" else (f"{channel}.{topic}" if channel else topic)


def follow_segments(tx: IngestTransaction, events: Sequence[EventIn]) -> list[EventIn]:
    """Keep segment memberships as the events arrive; the moves a journey listens to become events."""
    derived = []
    for move in tx.move_segments(events):
        if move.event_name in tx.relayed:
            # Made by the engine from what is stored: nothing a client sent, so nothing to validate.
            derived.append(
                EventIn.model_construct(
                    id=segment_event_id(move, tx.now),
                    customer_id=move.customer_id,
                    name=move.event_name,
                    properties={"segment": move.segment},
                    timestamp=tx.now,
                    context=None,
                )
            )
    return derived


# In this order: coupons (their rows locked) before customers, as every ingest locks them; segments last, so
# they see the consents withdrawn by this very ingest.
INGEST_RULES: tuple[IngestRule, ...] = (redeem_coupons, withdraw_consents, follow_segments)
