"""Journeys and their funnels: what runs, how many entered, got each message, converted or dropped off."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from touchflow.api.deps import Read, RegistryDep, StoreDep
from touchflow.insight import build_funnel
from touchflow.models import JourneyFunnel
from touchflow.workflows.base import JourneySpec

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Read])
Since = Annotated[datetime | None, Query(description="Count runs and messages from this time on.")]


@router.get("", response_model=list[JourneyFunnel])
async def list_journeys(
    store: StoreDep,
    registry: RegistryDep,
    since: Since = None,
) -> list[JourneyFunnel]:
    """Every journey with its funnel (steps in the order the journey declares them)."""
    return [await _funnel(store, registry[name], since) for name in registry]


@router.get("/{journey}/funnel", response_model=JourneyFunnel)
async def journey_funnel(
    journey: str,
    store: StoreDep,
    registry: RegistryDep,
    since: Since = None,
) -> JourneyFunnel:
    """Entered → each step's messages (sent, delivered, skipped, failed, capped) → converted."""
    if journey not in registry:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no journey {journey!r}; journeys: {', '.join(registry)}"
        )
    return await _funnel(store, registry[journey], since)


async def _funnel(store: StoreDep, spec: JourneySpec, since: datetime | None) -> JourneyFunnel:
    journey = spec.name
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since: give a time zone, e.g. 2026-11-01T00:00:00Z")
    runs, deliveries, engagement = await asyncio.gather(
        asyncio.to_thread(store.journeys.status_counts, journey, since),
        asyncio.to_thread(store.deliveries.counts, journey, since),
        asyncio.to_thread(store.deliveries.engagement_counts, journey, since),
    )
    return build_funnel(spec, runs, deliveries, engagement)
