"""The two ways a delivery can fail. Every channel raises one of them; nothing returns False.

    DeliveryError
    ├── RetryableDeliveryError    try again later: timeouts, refused connections, 5xx, 429, SMTP 4xx,
    │                             provider quota or token windows. Temporal's retry policy does the waiting;
    │                             `retry_after` (seconds) carries a provider's own hint where it gives one.
    └── PermanentDeliveryError    will never succeed as sent: hard bounce, invalid address, subscription gone,
                                  payload too large, template rejected. `address_dead` says the address
                                  itself should be suppressed (a 410 push subscription, a 5.1.1 bounce).

Messages never hold the recipient's address or a secret: they end up in logs and in the Temporal history.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class DeliveryError(Exception):
    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class RetryableDeliveryError(DeliveryError):
    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    def __init__(self, reason: str, *, code: str | None = None, address_dead: bool = False) -> None:
        super().__init__(reason, code=code)
        self.address_dead = address_dead


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: it is either a number of seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return float(max(0, math.ceil(seconds)))
