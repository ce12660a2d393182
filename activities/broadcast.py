"""The activities of a broadcast: take the audience's snapshot, send one batch of it, record its status.

A batch sends each recipient through `JourneyActivities.deliver`, the pipeline journeys use (consent,
suppression, frequency caps, quiet hours, the delivery row keyed by broadcast and customer, the send lease),
so a batch retried after a crash sends only to those its first attempt did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_right
from collections import OrderedDict
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio import activity
from temporalio.exceptions import ApplicationError

from touchflow.activities.journey import JourneyActivities, MessageSource
from touchflow.activities.types import (
    BroadcastPlan,
    BroadcastSlot,
    MarkBroadcastInput,
    PlanBroadcastInput,
    SendBatchInput,
    SendBatchResult,
    SendStatus,
    SendStepInput,
    SendStepResult,
)
from touchflow.models import Broadcast, BroadcastStatus
from touchflow.rendering import InlineMessage, Rendered, TemplateMissing
from touchflow.storage.broadcasts import audience_page, delivery_journey
from touchflow.vocabulary import Stage

# Customers read per page while the snapshot is taken: memory stays flat however large the audience.
SNAPSHOT_PAGE = 1000
# Recipients of one batch being sent at once (each waits on the store and the provider).
SENDS_AT_ONCE = 50
# Where broadcast templates live when one is named: templates/broadcasts/<name>.<channel>.<locale>.<ext>.
TEMPLATE_FOLDER = "broadcasts"


def local_due(starts_at: datetime, clock: time, zone_name: str | None, default_zone: str) -> datetime:
    """The first moment from `starts_at` on when a clock in the customer's zone shows `clock`, in UTC."""
    zone: ZoneInfo = ZoneInfo("UTC")
    for name in (zone_name, default_zone):
        if name:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                zone = ZoneInfo(name)
                break
    local = starts_at.astimezone(zone)
    due = datetime.combine(local.date(), clock, tzinfo=zone)
    if due < local:
        due = datetime.combine(local.date() + timedelta(days=1), clock, tzinfo=zone)
    return due.astimezone(UTC)


def parse_local_time(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


class BroadcastActivities:
    def __init__(self, journeys: JourneyActivities) -> None:
        self.journeys = journeys
        self.store = journeys.store
        self.settings = journeys.settings
        # Compiled content of the broadcasts this worker sends (a few at a time).
        self._sources: OrderedDict[str, tuple[Broadcast, MessageSource]] = OrderedDict()

    @activity.defn(name="plan_broadcast")
    async def plan_broadcast(self, input: PlanBroadcastInput) -> BroadcastPlan:
        broadcast = await self._broadcast(input.broadcast_id)
        size = self.settings.broadcast_batch_size
        if broadcast.rate:
            # A batch is about a second of sending at the broadcast's rate, so pacing batches paces messages.
            size = max(1, min(size, int(broadcast.rate)))
        if broadcast.total is None:
            await self._snapshot(broadcast, input.starts_at.replace(microsecond=0), size)
        slots = await asyncio.to_thread(self.store.broadcasts.slots, broadcast.id)
        stored = await self._broadcast(input.broadcast_id)
        channel = broadcast.via[0]
        limited = self.settings.channel_rate_limit(channel) is not None
        return BroadcastPlan(
            total=stored.total or 0,
            slots=[BroadcastSlot(due, batches) for due, batches in slots],
            task_queue=rate_limited_queue(self.settings.task_queue, channel)
            if limited
            else self.settings.task_queue,
            batch_size=size,
            concurrency=1 if broadcast.rate else self.settings.broadcast_concurrency,
            rate=broadcast.rate,
        )

    async def _snapshot(self, broadcast: Broadcast, starts_at: datetime, size: int) -> None:
        """Write the audience, page by page, with each recipient's due time and batch; then its size.

        An attempt that died half-way left rows that nothing was sent from yet: they are taken again.
        """
        broadcasts = self.store.broadcasts
        await asyncio.to_thread(broadcasts.clear_snapshot, broadcast.id)
        clock = parse_local_time(broadcast.local_time) if broadcast.local_time else None
        # Customers due at each time so far: the next one's batch number (the slots are few: time zones).
        seen: dict[datetime, int] = {}
        ids = sorted(set(broadcast.audience.get("customer_ids") or ()))
        after: str | None = None
        while True:
            if "segment" in broadcast.audience:
                page = await asyncio.to_thread(
                    audience_page, self.store.segments, broadcast.audience["segment"], after, SNAPSHOT_PAGE
                )
            else:
                start = len(ids) if not ids else _after(ids, after)
                page = ids[start : start + SNAPSHOT_PAGE]
            if not page:
                break
            zones = await asyncio.to_thread(broadcasts.timezones, page) if clock else {}
            rows = []
            for customer_id in page:
                due = starts_at
                if clock is not None:
                    due = local_due(starts_at, clock, zones.get(customer_id), self.settings.default_timezone)
                count = seen.get(due, 0)
                seen[due] = count + 1
                rows.append((customer_id, due, count // size))
            await asyncio.to_thread(broadcasts.add_recipients, broadcast.id, rows)
            activity.heartbeat(len(rows))
            after = page[-1]
        await asyncio.to_thread(broadcasts.finish_snapshot, broadcast.id)

    @activity.defn(name="send_broadcast_batch")
    async def send_broadcast_batch(self, input: SendBatchInput) -> SendBatchResult:
        broadcast, source = await self._source(input.broadcast_id)
        customer_ids = await asyncio.to_thread(
            self.store.broadcasts.batch, input.broadcast_id, input.due_at, input.batch
        )
        inputs = [recipient_input(broadcast, c) for c in customer_ids]
        # One row built, its copies claimed in one statement: what `deliver` would claim one by one.
        row = self.journeys.delivery_row(inputs[0]).model_dump(exclude={"id"}) if inputs else {}
        rows = [{**row, "key": i.key, "customer_id": i.customer_id} for i in inputs]
        claimed = await asyncio.to_thread(self.store.deliveries.claim_many, rows)
        profiles = await asyncio.to_thread(self.store.customers.get_many, customer_ids)
        gate = asyncio.Semaphore(SENDS_AT_ONCE)
        done = 0

        async def one(input: SendStepInput) -> SendStepResult:
            nonlocal done
            async with gate:
                result = await self.journeys.deliver(
                    input, source, claimed=claimed[input.key], customer=profiles.get(input.customer_id)
                )
            done += 1
            activity.heartbeat(done)
            return result

        results = await asyncio.gather(*(one(i) for i in inputs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # Temporal retries the batch; its recipients already done answer from their delivery rows.
            raise errors[0]
        deferred = [
            r.retry_at
            for r in results
            if isinstance(r, SendStepResult) and r.status == SendStatus.DEFERRED and r.retry_at
        ]
        return SendBatchResult(recipients=len(customer_ids), deferred_until=max(deferred, default=None))

    @activity.defn(name="mark_broadcast")
    async def mark_broadcast(self, input: MarkBroadcastInput) -> None:
        await asyncio.to_thread(
            self.store.broadcasts.set_status, input.broadcast_id, BroadcastStatus(input.status)
        )

    async def _broadcast(self, broadcast_id: str) -> Broadcast:
        broadcast = await asyncio.to_thread(self.store.broadcasts.get, broadcast_id)
        if broadcast is None:
            raise ApplicationError(
                f"no broadcast {broadcast_id!r}", type="NoSuchBroadcast", non_retryable=True
            )
        return broadcast

    async def _source(self, broadcast_id: str) -> tuple[Broadcast, MessageSource]:
        if broadcast_id in self._sources:
            self._sources.move_to_end(broadcast_id)
            return self._sources[broadcast_id]
        broadcast = await self._broadcast(broadcast_id)
        renderer = self.journeys.renderer
        source: MessageSource
        if broadcast.template:
            source = partial(renderer.render, TEMPLATE_FOLDER, broadcast.template)
        else:
            inline = {
                ch: renderer.inline(f"{broadcast.name}.{ch}", c)
                for ch, c in (broadcast.content or {}).items()
            }
            source = partial(_render_inline, broadcast.name, inline)
        # Kept without its audience: a list of ids that batches never read (they read their own rows).
        broadcast = broadcast.model_copy(update={"audience": {}})
        self._sources[broadcast_id] = (broadcast, source)
        while len(self._sources) > 8:
            self._sources.popitem(last=False)
        return broadcast, source


def rate_limited_queue(task_queue: str, channel: str) -> str:
    """The task queue of a channel's broadcast batches when its provider's rate limit is set."""
    return f"{task_queue}.{channel}"


def recipient_input(broadcast: Broadcast, customer_id: str) -> SendStepInput:
    """One recipient's delivery: keyed by broadcast and customer, so it is claimed and sent once."""
    return SendStepInput(
        journey=delivery_journey(broadcast.id),
        step=broadcast.name,
        workflow_id=delivery_journey(broadcast.id),
        customer_id=customer_id,
        key=f"{delivery_journey(broadcast.id)}:{customer_id}",
        channels=list(broadcast.via),
        stage=Stage.RETENTION,
        entered_at=broadcast.created_at,
    )


def _render_inline(
    name: str, inline: dict[str, InlineMessage], channel: str, locale: str | None, context: dict[str, Any]
) -> Rendered:
    message = inline.get(channel)
    if message is None:
        raise TemplateMissing(f"broadcast {name} has no content for {channel}")
    return message.render(locale, context)


def _after(ids: list[str], after: str | None) -> int:
    return 0 if after is None else bisect_right(ids, after)
