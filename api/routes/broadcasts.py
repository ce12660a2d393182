"""Broadcasts: send one message to a segment or a list of customers, watch it go, pause, resume or cancel it.

The API stores the broadcast and starts its one workflow (`touchflow.workflows.broadcast`); the workflow
snapshots the audience and sends in batches. Counts are read from the recipients' deliveries.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from temporalio.service import RPCError

from touchflow.api.deps import Admin, Read, RegistryDep, RelayDep, SettingsDep, StoreDep
from touchflow.channels import REGISTRY as CHANNELS
from touchflow.errors import InvalidInput
from touchflow.insight import credits
from touchflow.models import (
    Broadcast,
    BroadcastCreate,
    BroadcastFunnel,
    BroadcastPage,
    BroadcastPublic,
    BroadcastStatus,
)
from touchflow.rendering import Renderer, TemplateBroken
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.storage.broadcasts import audience_page, delivery_journey
from touchflow.temporal import TemporalUnavailable
from touchflow.workflows.registry import Registry

router = APIRouter(prefix="/v1/broadcasts", tags=["broadcasts"])
# Only compiles inline content to find syntax errors before anything is stored (no template folders).
_COMPILER = Renderer()
# A recipient converted when they ordered within this long after their send. Journeys get the setting
# TOUCHFLOW_ATTRIBUTION_WINDOW (default 3 days): once it is in, this constant gives way to it.
# What each signal may follow.
_SIGNALS = {
    "pause": {BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING},
    "resume": {BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED},
    "cancel": {BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BroadcastPublic, dependencies=[Admin])
async def create_broadcast(
    body: BroadcastCreate, store: StoreDep, relay: RelayDep, settings: SettingsDep
) -> BroadcastPublic:
    """Store the broadcast and start sending it (at `send_at`, or now). 422 names what is wrong; 503 when
    Temporal cannot be reached (nothing is kept: try again)."""
    _check_channels(body)
    if body.segment is not None:
        await asyncio.to_thread(
            audience_page, store.segments, body.segment, None, 1
        )  # 404 when it cannot be sent to
    broadcast = Broadcast(
        id=f"b_{secrets.token_hex(8)}",
        audience={"segment": body.segment} if body.segment else {"customer_ids": body.customer_ids},
        **body.model_dump(include={"name", "via", "content", "template", "send_at", "local_time", "rate"}),
    )
    await asyncio.to_thread(store.broadcasts.create, broadcast)
    try:
        router_ = await relay.router()
        await router_.start_broadcast(broadcast.id, broadcast.send_at, settings.delivery_attempt_timeout)
    except (RPCError, TemporalUnavailable) as exc:
        await asyncio.to_thread(store.broadcasts.delete, broadcast.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not reach Temporal to start the broadcast ({exc}); nothing was kept: try again",
        ) from None
    return await public_broadcast(store, broadcast.id)


@router.get("", response_model=BroadcastPage, dependencies=[Read])
async def list_broadcasts(
    store: StoreDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BroadcastPage:
    """Broadcasts, newest first, a page at a time, each with its counts (the funnel is in the answer about
    one broadcast)."""
    broadcasts, next_cursor = await asyncio.to_thread(store.broadcasts.page, limit, cursor)
    outcomes = await asyncio.to_thread(store.broadcasts.outcomes, [b.id for b in broadcasts])
    return BroadcastPage(
        broadcasts=[_counted(b, outcomes[b.id]) for b in broadcasts], next_cursor=next_cursor
    )


@router.get("/{broadcast_id}", response_model=BroadcastPublic, dependencies=[Read])
async def get_broadcast(
    broadcast_id: str, store: StoreDep, settings: SettingsDep, registry: RegistryDep
) -> BroadcastPublic:
    """Where the broadcast stands: `status`, `total` recipients, `sent`, `skipped` by reason, `failed`,
    `pending` (not sent to yet), and its `funnel`: opened, clicked, converted (attributed as journeys'
    conversions are) and their revenue."""
    public = await public_broadcast(store, broadcast_id)
    public.funnel = await asyncio.to_thread(_funnel, store, settings, registry, broadcast_id)
    return public


@router.post("/{broadcast_id}/pause", response_model=BroadcastPublic, dependencies=[Admin])
async def pause_broadcast(broadcast_id: str, store: StoreDep, relay: RelayDep) -> BroadcastPublic:
    """Stop starting batches (those in flight finish); `resume` goes on where it stopped."""
    return await _signal(store, relay, broadcast_id, "pause")


@router.post("/{broadcast_id}/resume", response_model=BroadcastPublic, dependencies=[Admin])
async def resume_broadcast(broadcast_id: str, store: StoreDep, relay: RelayDep) -> BroadcastPublic:
    """Go on sending a paused broadcast."""
    return await _signal(store, relay, broadcast_id, "resume")


@router.post("/{broadcast_id}/cancel", response_model=BroadcastPublic, dependencies=[Admin])
async def cancel_broadcast(broadcast_id: str, store: StoreDep, relay: RelayDep) -> BroadcastPublic:
    """Send to no one else (batches in flight finish); the recipients not sent to stay pending."""
    return await _signal(store, relay, broadcast_id, "cancel")


def _check_channels(body: BroadcastCreate) -> None:
    for name in body.via:
        if name not in CHANNELS:
            raise InvalidInput(f"via: no channel {name!r}; channels: {', '.join(sorted(CHANNELS))}")
    for name, parts in (body.content or {}).items():
        per_language = parts if all(isinstance(v, dict) for v in parts.values()) else {"": parts}
        for language, texts in per_language.items():
            where = f"content.{name}" + (f".{language}" if language else "")
            missing = [p for p in CHANNELS[name].required_parts if p not in texts]
            if missing:
                raise InvalidInput(f"{where}: {name} needs the parts {', '.join(missing)}")
        try:
            _COMPILER.inline(f"content.{name}", parts)
        except TemplateBroken as exc:
            raise InvalidInput(str(exc)) from None


async def _signal(store: Store, relay: RelayDep, broadcast_id: str, signal: str) -> BroadcastPublic:
    current = await public_broadcast(store, broadcast_id)
    if current.status not in _SIGNALS[signal]:
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot {signal} a broadcast that is {current.status}")
    try:
        router_ = await relay.router()
        await router_.signal_broadcast(broadcast_id, signal)
    except (RPCError, TemporalUnavailable) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"could not reach Temporal to {signal} it ({exc}): try again"
        ) from None
    return current


async def public_broadcast(store: Store, broadcast_id: str) -> BroadcastPublic:
    """The broadcast with its counts (404 when there is none); the dashboard shows the same."""
    broadcast = await asyncio.to_thread(store.broadcasts.get, broadcast_id)
    if broadcast is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no broadcast with id {broadcast_id!r}")
    return _counted(broadcast, await asyncio.to_thread(store.broadcasts.outcome_counts, broadcast_id))


def _funnel(store: Store, settings: Settings, registry: Registry, broadcast_id: str) -> BroadcastFunnel:
    journey = delivery_journey(broadcast_id)
    engagement = store.deliveries.engagement_counts(journey).values()
    window = settings.attribution_window
    credited = credits(store, registry, window, None, None, journey=journey).values()
    return BroadcastFunnel(
        opened=sum(opened for opened, _ in engagement),
        clicked=sum(clicked for _, clicked in engagement),
        converted=sum(n for n, _ in credited),
        revenue=round(sum(money for _, money in credited), 2),
        conversion_window=window,
    )


def _counted(broadcast: Broadcast, counts: list[tuple[str, str | None, int]]) -> BroadcastPublic:
    public = BroadcastPublic.model_validate(broadcast, update={})
    for state, reason, n in counts:
        if state in ("sent", "delivered"):
            public.sent += n
        elif state in ("skipped", "capped"):
            key = reason or state
            public.skipped[key] = public.skipped.get(key, 0) + n
        elif state == "failed":
            public.failed += n
    done = public.sent + public.failed + sum(public.skipped.values())
    public.pending = max(0, (broadcast.total or 0) - done)
    return public
