"""Journeys and their funnels: what runs, how many entered, got each message, converted or dropped off, and
the conversions and revenue attributed to them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from touchflow.api.deps import Read, RegistryDep, SettingsDep, StoreDep
from touchflow.api.period import PeriodDep
from touchflow.insight import journey_funnel as build
from touchflow.insight import stage_funnel
from touchflow.models import JourneyFunnel, StageFunnel

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Read])
stages_router = APIRouter(prefix="/v1/stages", tags=["journeys"], dependencies=[Read])


@router.get("", response_model=list[JourneyFunnel])
async def list_journeys(
    store: StoreDep, registry: RegistryDep, settings: SettingsDep, period: PeriodDep
) -> list[JourneyFunnel]:
    """Every journey with its funnel (steps in the order the journey declares them)."""
    window = settings.attribution_window
    return [
        await build(store, registry, registry[name], window, period.since, period.until) for name in registry
    ]


@router.get("/{journey}/funnel", response_model=JourneyFunnel)
async def journey_funnel(
    journey: str, store: StoreDep, registry: RegistryDep, settings: SettingsDep, period: PeriodDep
) -> JourneyFunnel:
    """Entered → each step's messages (sent, delivered, skipped, failed, capped) → converted, with the
    conversions and revenue attributed to each step (last touch within TOUCHFLOW_ATTRIBUTION_WINDOW) and each
    A/B experiment's verdict, over [since, until)."""
    if journey not in registry:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no journey {journey!r}; journeys: {', '.join(registry)}"
        )
    return await build(
        store, registry, registry[journey], settings.attribution_window, period.since, period.until
    )


@stages_router.get("", response_model=list[StageFunnel])
async def stages(
    store: StoreDep, registry: RegistryDep, settings: SettingsDep, period: PeriodDep
) -> list[StageFunnel]:
    """The stage funnel across every journey and broadcast over [since, until): messages sent per stage,
    customers sent one, how many moved on to the next stage, conversions credited to each stage."""
    return await stage_funnel(store, registry, settings.attribution_window, period.since, period.until)
