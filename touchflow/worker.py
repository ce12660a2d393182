"""The Temporal worker: every journey of the registry and the activities they call.

This is the composition root for the worker side, so it is the one place in `touchflow/` that builds the
activities and channels. The registry (built-ins plus the user's modules) is handed in, never looked up.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from touchflow.activities.broadcast import BroadcastActivities, rate_limited_queue
from touchflow.activities.coupons import CouponActivities
from touchflow.activities.inbox import StoreInbox
from touchflow.activities.insight import InsightActivities
from touchflow.activities.journey import JourneyActivities
from touchflow.activities.segments import SegmentActivities
from touchflow.activities.types import RefreshInsightInput, RefreshSegmentsInput
from touchflow.activities.zalo_tokens import StoreSendingHold, StoreTokenProvider
from touchflow.channels import build_channels
from touchflow.db import make_engine
from touchflow.metrics import WorkerMetrics
from touchflow.rendering import Renderer
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.workflows import insight_refresh, segment_refresh
from touchflow.workflows.broadcast import BroadcastWorkflow
from touchflow.workflows.insight_refresh import RefreshInsight
from touchflow.workflows.registry import Registry
from touchflow.workflows.segment_refresh import RefreshSegments

# The sandbox re-imports workflow modules for every run. touchflow's own workflows (the journey base, the
# built-in journeys, broadcasts and refreshes), its public face and the activities' data types are
# deterministic library code (no clocks, randomness or I/O; the replay tests hold them to it), so they are
# imported once, not per run; the journeys of a shop's own modules (TOUCHFLOW_JOURNEYS) stay sandboxed, which
# is what guards the code users write.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "touchflow.workflows", "touchflow.activities.types", "touchflow.journeys", "touchflow.vocabulary"
    )
)


def template_dirs(settings: Settings, registry: Registry) -> list[Path]:
    """Where templates are looked up first: TOUCHFLOW_TEMPLATES_DIR, then the user's journey modules."""
    return [*([settings.templates_dir] if settings.templates_dir else []), *registry.template_dirs]


def build_activities(settings: Settings, registry: Registry, store: Store | None = None) -> JourneyActivities:
    store = store or Store(make_engine(settings.resolved_database_url))
    store.segments.configure(settings, registry)
    return JourneyActivities(
        store=store,
        channels=build_channels(
            settings,
            inbox=StoreInbox(store),
            zalo_tokens=StoreTokenProvider.from_settings(settings, store),
            zalo_hold=StoreSendingHold.from_settings(settings, store),
        ),
        renderer=Renderer(template_dirs(settings, registry), settings.default_locale),
        settings=settings,
        journeys=registry,
        metrics=WorkerMetrics(list(registry)),
    )


def build_worker(
    client: Client,
    settings: Settings,
    activities: JourneyActivities,
    registry: Registry,
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            *(spec.workflow for spec in registry.values()),
            RefreshSegments,
            RefreshInsight,
            BroadcastWorkflow,
        ],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            activities.enter_journey,
            activities.leave_journey,
            activities.deliver_step,
            CouponActivities(activities.store).issue_coupon,
            SegmentActivities(activities.store).refresh_segments,
            InsightActivities(activities.store, registry, settings.attribution_window).refresh_insight,
            *_broadcast_activities(activities),
            *registry.activities,
        ],
        # Journeys deliver (and enter and leave) in local activities; a shop's own activities, coupons and
        # broadcasts' batches are regular ones. A delivery holds its run's workflow task open, so each local
        # activity slot comes with a workflow task slot of its own: deliveries in flight never leave the
        # worker without slots to decide other journeys' steps.
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_local_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks
        + settings.worker_max_concurrent_activities,
        max_cached_workflows=settings.worker_max_cached_workflows,
    )


async def ensure_segment_schedule(client: Client, settings: Settings) -> None:
    """The Temporal Schedule that sweeps segments every TOUCHFLOW_SEGMENT_REFRESH_INTERVAL."""
    action = ScheduleActionStartWorkflow(
        RefreshSegments.run,
        RefreshSegmentsInput(),
        id=segment_refresh.SCHEDULE_ID,
        task_queue=settings.task_queue,
    )
    await _keep_schedule(client, segment_refresh.SCHEDULE_ID, action, settings.segment_refresh_interval)


async def ensure_insight_schedule(client: Client, settings: Settings) -> None:
    """The Temporal Schedule that keeps the journey map's rollups and the kept attributions up to date every
    TOUCHFLOW_INSIGHT_REFRESH_INTERVAL."""
    action = ScheduleActionStartWorkflow(
        RefreshInsight.run,
        RefreshInsightInput(),
        id=insight_refresh.SCHEDULE_ID,
        task_queue=settings.task_queue,
    )
    await _keep_schedule(client, insight_refresh.SCHEDULE_ID, action, settings.insight_refresh_interval)


async def _keep_schedule(
    client: Client, schedule_id: str, action: ScheduleActionStartWorkflow, every: timedelta
) -> None:
    """A schedule created once, its interval updated on every worker start (so a changed setting takes),
    never two of it; a run still going when the next is due is not doubled (SKIP)."""
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))


def _broadcast_activities(activities: JourneyActivities) -> list[Any]:
    broadcasts = BroadcastActivities(activities)
    return [broadcasts.plan_broadcast, broadcasts.send_broadcast_batch, broadcasts.mark_broadcast]


def build_channel_workers(client: Client, settings: Settings, activities: JourneyActivities) -> list[Worker]:
    """A worker on each rate-limited channel's broadcast queue (`TOUCHFLOW_<CHANNEL>_RATE_LIMIT`): Temporal
    holds the queue's rate across every worker polling it, so ten workers send no faster than one may."""
    broadcasts = BroadcastActivities(activities)
    workers = []
    for channel in ("email", "web_push", "zalo_zns"):
        limit = settings.channel_rate_limit(channel)
        if limit is None:
            continue
        workers.append(
            Worker(
                client,
                task_queue=rate_limited_queue(settings.task_queue, channel),
                activities=[broadcasts.send_broadcast_batch],
                # One activity is one batch: batches/s times recipients per batch stays within the limit.
                max_task_queue_activities_per_second=limit / settings.broadcast_batch_size,
                max_concurrent_activities=settings.broadcast_concurrency,
            )
        )
    return workers
