"""Attribution: which touchpoint a conversion is credited to. Pure: the store fetches the candidates
(`storage.insight`), this module applies the rule (docs/insight.md#attribution).

The rule, last touch: a conversion is an event that is `order_placed` or a goal of some journey. It is
credited to the customer's latest touchpoint (a message sent to them: a delivery with `sent_at`) sent at most
TOUCHFLOW_ATTRIBUTION_WINDOW before it, and not after it; a goal event other than `order_placed` only to a
touchpoint of a journey that has it as a goal. Its revenue is the event's `total` read as a number (anything
else, or a negative, is 0). Each conversion is credited once, to that touchpoint's journey, step, channel and
variant; a conversion with no touchpoint in the window is not attributed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from touchflow.workflows.base import as_number

ORDER_EVENT = "order_placed"
RULE = (
    "Last touch: an order_placed (its total as revenue) or a journey's goal event is credited to the latest "
    "message sent to the customer at most {window} before it (a goal only to its own journey's messages)."
)


@dataclass(frozen=True)
class Touchpoint:
    delivery_id: int
    customer_id: str
    journey: str
    step: str
    channel: str | None
    variant: str | None
    stage: str | None
    sent_at: datetime


@dataclass(frozen=True)
class Conversion:
    event_id: str
    customer_id: str
    name: str
    at: datetime
    revenue: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Conversion:
        """From the store's row (id, customer_id, name, occurred_at, properties)."""
        event_id, customer_id, name, at, properties = row
        return cls(str(event_id), str(customer_id), str(name), at, revenue(properties or {}))


@dataclass(frozen=True)
class Attributed:
    conversion: Conversion
    touchpoint: Touchpoint


def conversion_names(goals: Mapping[str, Iterable[str]]) -> list[str]:
    """The event names that count as conversions: `order_placed` and every journey's goals."""
    return sorted({ORDER_EVENT, *(name for names in goals.values() for name in names)})


def revenue(properties: Mapping[str, Any]) -> float:
    """An event's `total` as revenue: untrusted input, so a non-number or a negative counts 0."""
    return max(as_number(properties.get("total"), 0.0) or 0.0, 0.0)


def describe(window: timedelta) -> str:
    """The rule in one sentence, with the window in force (shown on the dashboard)."""
    return RULE.format(window=human_duration(window))


def human_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def attribute(
    conversions: Iterable[Conversion],
    touchpoints: Iterable[Touchpoint],
    window: timedelta,
    goals: Mapping[str, Iterable[str]],
) -> list[Attributed]:
    """Each conversion credited to its last touch (the rule above); unattributed ones are left out."""
    goal_sets = {journey: set(names) for journey, names in goals.items()}
    by_customer: dict[str, list[Touchpoint]] = defaultdict(list)
    for touch in touchpoints:
        by_customer[touch.customer_id].append(touch)
    times: dict[str, list[datetime]] = {}
    for customer, touches in by_customer.items():
        touches.sort(key=lambda t: (t.sent_at, t.delivery_id))
        times[customer] = [t.sent_at for t in touches]
    credited = []
    for conversion in conversions:
        touches = by_customer.get(conversion.customer_id, [])
        # Latest first, from the last touchpoint sent at or before the conversion back to the window's start.
        for touch in reversed(touches[: bisect_right(times.get(conversion.customer_id, []), conversion.at)]):
            if touch.sent_at < conversion.at - window:
                break
            if conversion.name == ORDER_EVENT or conversion.name in goal_sets.get(touch.journey, ()):
                credited.append(Attributed(conversion, touch))
                break
    return credited
