"""Erasure: a customer's personal data leaves every aggregate in one transaction; what the funnels count
stays, anonymous."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, String, cast, delete, literal, select, update

from touchflow.models import (
    Attribution,
    BroadcastRecipient,
    Coupon,
    CouponRedemption,
    Customer,
    Delivery,
    Engagement,
    Event,
    Identity,
    InboxMessage,
    JourneyEntry,
    OutboxEntry,
    PushSubscription,
    RelayLease,
    SegmentMembership,
    SegmentMovement,
    utcnow,
)
from touchflow.storage.base import table

# What stands in for a customer id once the customer is erased.
ERASED = "erased"
# Tables whose rows belong to one person and go with them on erasure.
PERSONAL_TABLES: tuple[Any, ...] = (
    Event,
    Attribution,  # a conversion's credit goes with its event
    InboxMessage,
    PushSubscription,
    CouponRedemption,
    Coupon,
    SegmentMembership,
    SegmentMovement,
    BroadcastRecipient,
)


def erase_customer(engine: Engine, customer_id: str) -> dict[str, int]:
    """Delete a customer's personal data; keep their deliveries and journey entries as anonymous counts.

    Events (and any not yet relayed), inbox messages and device subscriptions go; deliveries and journey
    entries lose every link to the person (ids, keys, provider ids, errors, attempt details) but keep the
    journey, step, channel, stage, status and times that the funnels count. Returns what was removed.
    """
    removed: dict[str, int] = {}
    with engine.begin() as conn:
        # Lease rows before outbox rows, as the relay takes them (`Outbox.claim`).
        leases = table(RelayLease)
        conn.execute(delete(leases).where(leases.c.customer_id == customer_id))
        outbox = table(OutboxEntry)
        queued = delete(outbox).where(outbox.c.customer_id == customer_id)
        removed["outbox"] = conn.execute(queued).rowcount
        deliveries = table(Delivery)
        engagements = table(Engagement)
        theirs = select(deliveries.c.id).where(deliveries.c.customer_id == customer_id)
        removed["engagements"] = conn.execute(
            delete(engagements).where(engagements.c.delivery_id.in_(theirs))
        ).rowcount
        for model in PERSONAL_TABLES:
            personal = table(model)
            removed[personal.name] = conn.execute(
                delete(personal).where(personal.c.customer_id == customer_id)
            ).rowcount
        removed["deliveries anonymised"] = conn.execute(
            update(deliveries)
            .where(deliveries.c.customer_id == customer_id)
            .values(
                customer_id=ERASED,
                workflow_id=ERASED,
                key=literal(f"{ERASED}:") + cast(deliveries.c.id, String),
                provider_id=None,
                error=None,
                attempts=[],
                updated_at=utcnow(),  # the funnel rollups of its hour count it again
            )
        ).rowcount
        entries = table(JourneyEntry)
        removed["journey entries anonymised"] = conn.execute(
            update(entries)
            .where(entries.c.customer_id == customer_id)
            .values(
                customer_id=ERASED,
                workflow_id=literal(f"{ERASED}:") + cast(entries.c.id, String),
                entry_key=None,
                trigger_event_id=None,
            )
        ).rowcount
        # The known customer's own erasure takes the links of the visitors merged into them; an anonymous id
        # erased (the TTL sweep) never takes a link: a merged one names the customer, not a profile.
        identities = table(Identity)
        removed["identities"] = conn.execute(
            delete(identities).where(identities.c.customer_id == customer_id)
        ).rowcount
        customers = table(Customer)
        removed["customers"] = conn.execute(delete(customers).where(customers.c.id == customer_id)).rowcount
    return removed
