"""activities/insight.py: after the refresh, the first view of a journey map has nothing left to count."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from temporalio.testing import ActivityEnvironment

from tests.support.insight import REGISTRY, seed
from touchflow.activities.insight import InsightActivities
from touchflow.activities.types import RefreshInsightInput
from touchflow.db import make_engine
from touchflow.insight import journey_funnel
from touchflow.models import AttributionState, Event, FunnelRollupHour, utcnow
from touchflow.storage import Store
from touchflow.storage.base import table
from touchflow.storage.rollups import HOUR

WINDOW = timedelta(days=3)


async def test_after_the_refresh_a_read_counts_nothing(db_url: str) -> None:
    store = Store(make_engine(db_url))
    try:
        seeded = seed(store)
        with store.engine.begin() as conn:  # the orders arrived long ago: settled, to be kept
            conn.execute(update(table(Event)).values(received_at=seeded.start))
        beats: list[Any] = []
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: beats.append(details)
        refresh = InsightActivities(store, REGISTRY, WINDOW).refresh_insight

        result = await env.run(refresh, RefreshInsightInput())

        hours = table(FunnelRollupHour)
        with store.engine.connect() as conn:
            marked = conn.scalar(select(func.count()).select_from(hours).where(hours.c.journey == "winback"))
            watermark = conn.scalar(select(table(AttributionState).c.watermark))
        # Every whole hour from the first one after the first entry (an hour before the seed's start) to the
        # current one.
        first = -(-int((seeded.start - timedelta(hours=1)).timestamp()) // HOUR)
        assert marked == int(utcnow().timestamp()) // HOUR - first
        assert (result.journeys, result.hours) == (len(REGISTRY), marked)
        assert watermark is not None
        assert ("winback",) in beats

        writes: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                writes.append(statement)

        event.listen(store.engine, "before_cursor_execute", record)
        spec = REGISTRY["winback"]
        funnel = await journey_funnel(store, REGISTRY, spec, WINDOW, utcnow() - timedelta(days=30))
        event.remove(store.engine, "before_cursor_execute", record)
        assert writes == []  # no hour recounted, no attribution decided: the view only reads
        assert (funnel.entered, funnel.attributed_conversions) == (400, 122)

        again = await env.run(refresh, RefreshInsightInput())
        assert again.hours == 0
    finally:
        await asyncio.to_thread(store.engine.dispose)
