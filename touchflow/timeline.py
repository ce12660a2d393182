"""A customer's timeline: events, journeys entered and how they ended, every touchpoint with its channel and
outcome (converted, clicked, opened, or why it was not sent), segment and lifecycle-stage changes; newest
first, in cursor pages. The JSON API and the dashboard's customer page both serve `customer_timeline`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from touchflow.encoding import b64url_decode, b64url_encode
from touchflow.errors import InvalidInput, NotFound
from touchflow.insight import attributed
from touchflow.models import Timeline, TimelineItem
from touchflow.segments import LIFECYCLE_PREFIX
from touchflow.storage import Store, TimelineRow
from touchflow.workflows.base import JourneySpec

MAX_LIMIT = 200


def _cursor(row: TimelineRow) -> str:
    return b64url_encode(json.dumps([row.at.isoformat(), row.rank, row.key]).encode())


def _parse_cursor(cursor: str) -> tuple[datetime, int, str]:
    try:
        at, rank, key = json.loads(b64url_decode(cursor))
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(rank, int) or not isinstance(key, str):
            raise ValueError
        return parsed, rank, key
    except (ValueError, TypeError):
        raise InvalidInput("cursor: not a cursor this API returned; pass `next_cursor` as it came") from None


async def customer_timeline(
    store: Store,
    registry: Mapping[str, JourneySpec],
    window: timedelta,
    customer_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Timeline:
    """One page of the customer's timeline over [since, until); NotFound for a customer never seen."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit: between 1 and {MAX_LIMIT}")
    before = _parse_cursor(cursor) if cursor is not None else None
    customer = await asyncio.to_thread(store.customers.get, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id!r}")
    rows, memberships, credits = await asyncio.gather(
        asyncio.to_thread(store.insight.timeline, customer_id, limit + 1, before, since, until),
        asyncio.to_thread(store.segments.of_customer, customer_id),
        # Every conversion of theirs: a touchpoint on this page may be credited with one on another.
        asyncio.to_thread(attributed, store, registry, window, None, None, customer_id=customer_id),
    )
    by_delivery = {c.touchpoint.delivery_id: c for c in credits}
    by_event = {c.conversion.event_id: c for c in credits}
    items = []
    for row in rows[:limit]:
        item = TimelineItem(at=row.at, kind=row.kind, **_fields(row))
        if row.kind == "touchpoint":
            credit = by_delivery.get(int(row.data["delivery_id"]))
            if credit is not None:
                item.conversion_event_id = credit.conversion.event_id
                item.revenue = credit.conversion.revenue
            item.outcome = (
                "converted"
                if credit is not None
                else "clicked"
                if item.clicks
                else "opened"
                if item.opened_at
                else item.status
            )
        elif row.kind == "event" and (credit := by_event.get(row.key)) is not None:
            touch = credit.touchpoint
            item.revenue = credit.conversion.revenue
            item.attributed_to = {
                "journey": touch.journey,
                "step": touch.step,
                "channel": touch.channel,
                "variant": touch.variant,
                "delivery_id": touch.delivery_id,
            }
        elif row.kind.startswith("segment_") and str(item.segment).startswith(LIFECYCLE_PREFIX):
            item.lifecycle_stage = str(item.segment).removeprefix(LIFECYCLE_PREFIX)
        items.append(item)
    segments = [m.segment for m in memberships]
    stages = [s.removeprefix(LIFECYCLE_PREFIX) for s in segments if s.startswith(LIFECYCLE_PREFIX)]
    return Timeline(
        customer_id=customer_id,
        consents=dict(customer.consents or {}),
        lifecycle_stage=stages[0] if stages else None,
        segments=segments,
        items=items,
        next_cursor=_cursor(rows[limit - 1]) if len(rows) > limit else None,
    )


def _fields(row: TimelineRow) -> dict[str, object]:
    data = dict(row.data)
    data.pop("delivery_id", None)
    data.pop("sent_at", None)
    return data
