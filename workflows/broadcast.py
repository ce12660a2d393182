"""A broadcast: one workflow per broadcast that snapshots its audience and sends to it in batches of
activities, never a workflow per recipient.

    wait for send_at ─► plan (snapshot: who, when in their zone, which batch) ─► per due time: wait for it,
    send its batches (a few at once, or paced at `rate`) ─► batches with recipients in quiet hours again later

pause, resume and cancel are signals; the status the API shows is written by the workflow alone, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.broadcast import BroadcastActivities
    from touchflow.activities.types import (
        BroadcastPlan,
        MarkBroadcastInput,
        PlanBroadcastInput,
        SendBatchInput,
        SendBatchResult,
    )
    from touchflow.vocabulary import BroadcastStatus

# Quiet hours may defer recipients of a batch; the batch is sent again when they end, this many times at most.
DEFERRAL_ROUNDS = 3
_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@dataclass
class BroadcastInput:
    broadcast_id: str
    send_at: datetime | None = None
    # How long one batch may go without a heartbeat before Temporal retries it elsewhere (a dead worker).
    heartbeat_timeout_seconds: float = 60.0


@dataclass
class BroadcastOutcome:
    status: str
    total: int = 0


def workflow_id(broadcast_id: str) -> str:
    return f"broadcast:{broadcast_id}"


@workflow.defn(name="broadcast")
class BroadcastWorkflow:
    def __init__(self) -> None:
        self.status = BroadcastStatus.SCHEDULED
        self.paused = False
        self.cancelled = False
        self._marking = asyncio.Lock()

    @workflow.signal
    async def pause(self) -> None:
        self.paused = True
        if self.status == BroadcastStatus.SENDING:
            await self._mark(BroadcastStatus.PAUSED)

    @workflow.signal
    async def resume(self) -> None:
        self.paused = False
        if self.status == BroadcastStatus.PAUSED:
            await self._mark(BroadcastStatus.SENDING)

    @workflow.signal
    async def cancel(self) -> None:
        self.cancelled = True

    @workflow.query
    def get_status(self) -> str:
        return str(self.status)

    @workflow.run
    async def run(self, input: BroadcastInput) -> BroadcastOutcome:
        self.input = input
        if input.send_at is not None:
            await self._sleep_until(input.send_at)
        plan: BroadcastPlan | None = None
        if not self.cancelled:
            plan = await workflow.execute_activity_method(
                BroadcastActivities.plan_broadcast,
                PlanBroadcastInput(input.broadcast_id, starts_at=workflow.now()),
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
            )
            await self._mark(BroadcastStatus.PAUSED if self.paused else BroadcastStatus.SENDING)
            await self._send(plan)
        await self._mark(BroadcastStatus.CANCELLED if self.cancelled else BroadcastStatus.COMPLETED)
        return BroadcastOutcome(str(self.status), plan.total if plan else 0)

    async def _send(self, plan: BroadcastPlan) -> None:
        deferred: list[tuple[datetime, SendBatchInput]] = []
        for slot in plan.slots:
            await self._sleep_until(slot.due_at)
            batches = [SendBatchInput(self.input.broadcast_id, slot.due_at, b) for b in range(slot.batches)]
            deferred += await self._batches(plan, batches)
        for _ in range(DEFERRAL_ROUNDS):
            if not deferred or self.cancelled:
                break
            again: list[tuple[datetime, SendBatchInput]] = []
            for until, batch in sorted(deferred, key=lambda d: d[0]):
                await self._sleep_until(until)
                again += await self._batches(plan, [batch])
            deferred = again

    async def _batches(
        self, plan: BroadcastPlan, batches: list[SendBatchInput]
    ) -> list[tuple[datetime, SendBatchInput]]:
        """Send `batches`, `plan.concurrency` at a time, one every batch_size/rate seconds when paced; the
        ones with deferred recipients and when to send them again."""
        running: set[asyncio.Task[None]] = set()
        deferred: list[tuple[datetime, SendBatchInput]] = []
        interval = timedelta(seconds=plan.batch_size / plan.rate) if plan.rate else None
        next_start = workflow.now()

        async def send(batch: SendBatchInput) -> None:
            result: SendBatchResult = await workflow.execute_activity_method(
                BroadcastActivities.send_broadcast_batch,
                batch,
                task_queue=plan.task_queue,
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(seconds=self.input.heartbeat_timeout_seconds),
                retry_policy=_RETRY,
            )
            if result.deferred_until is not None:
                deferred.append((result.deferred_until, batch))

        for batch in batches:
            await workflow.wait_condition(lambda: self.cancelled or not self.paused)
            await workflow.wait_condition(lambda: len(running) < plan.concurrency)
            if self.cancelled:
                break
            if interval is not None:
                await self._sleep_until(next_start)
                next_start = max(next_start, workflow.now()) + interval
            task = asyncio.create_task(send(batch))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
        return deferred

    async def _sleep_until(self, moment: datetime) -> None:
        """A durable timer; a cancel ends it early."""
        wait = moment - workflow.now()
        if wait > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self.cancelled, timeout=wait)

    async def _mark(self, status: BroadcastStatus) -> None:
        """Record the status in the store, in the order the workflow reaches it; an ended one stays."""
        async with self._marking:
            if self.status in (BroadcastStatus.COMPLETED, BroadcastStatus.CANCELLED) or status == self.status:
                return
            self.status = status
            await workflow.execute_activity_method(
                BroadcastActivities.mark_broadcast,
                MarkBroadcastInput(self.input.broadcast_id, str(status)),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_RETRY,
            )
