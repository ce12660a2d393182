"""Anonymous visitors who never identify are forgotten TOUCHFLOW_ANONYMOUS_TTL after they were last seen:
their profile, events, inbox and devices go, as an erasure takes them (`Store.erase`). Every API process
sweeps; a sweep is idempotent, so two at once do no harm."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from touchflow.models import utcnow
from touchflow.storage import Store

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(hours=1)


def forget_stale(store: Store, ttl: timedelta, now: datetime | None = None) -> int:
    """Erase every anonymous profile not seen within `ttl` and in no running journey; how many went."""
    cutoff = (now or utcnow()) - ttl
    forgotten = 0
    while stale := store.identities.stale_visitors(cutoff):
        for customer_id in stale:
            store.erase(customer_id)
        forgotten += len(stale)
    return forgotten


async def sweep_forever(store: Store, ttl: timedelta, every: timedelta = SWEEP_EVERY) -> None:
    while True:
        try:
            if forgotten := await asyncio.to_thread(forget_stale, store, ttl):
                log.info("forgot anonymous visitors", extra={"visitors": forgotten, "ttl": str(ttl)})
        except Exception as exc:  # the database away for a moment: the next sweep catches up
            log.warning("anonymous visitor sweep failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every.total_seconds())
