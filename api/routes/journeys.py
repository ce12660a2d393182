"""Journeys and their funnels: what runs, how many entered, got each message, converted or dropped off."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from touchflow.api.deps import Read, StoreDep
from touchflow.insight import build_funnel
from touchflow.models import JourneyFunnel
from touchflow.workflows.registry import REGISTRY

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Read])
Since = Annotated[datetime | None, Query(description="Count runs and messages from this time on.")]


@router.get("", response_model=list[JourneyFunnel])
async def list_journeys(
    store: StoreDep,
    since: Since = None,
) -> list[JourneyFunnel]:
    """Every journey with its funnel (steps in the order the journey declares them)."""
    return [await _funnel(store, name, since) for name in REGISTRY]


@router.get("/{journey}/funnel", response_model=JourneyFunnel)
async def journey_funnel(
    journey: str,
    store: StoreDep,
    since: Since = None,
) -> JourneyFunnel:
    """Entered → each step's messages (sent, delivered, skipped, failed, capped) → converted."""
    if journey not in REGISTRY:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no journey {journey!r}; journeys: {', '.join(REGISTRY)}"
        )
    return await _funnel(store, journey, since)


async def _funnel(store: StoreDep, journey: str, since: datetime | None) -> JourneyFunnel:
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since: give a time zone, e.g. 2026-11-01T00:00:00Z")
    runs, deliveries, engagement = await asyncio.gather(
        asyncio.to_thread(store.journey_counts, journey, since),
        asyncio.to_thread(store.delivery_counts, journey, since),
        asyncio.to_thread(store.engagement_counts, journey, since),
    )
    return build_funnel(REGISTRY[journey], runs, deliveries, engagement)
