"""The Temporal worker: every journey of the registry and the activities they call.

This is the composition root for the worker side, so it is the one place in `touchflow/` that builds the
activities and channels.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.client import Client
from temporalio.worker import Worker

from activities.coupons import CouponActivities
from activities.journey import JourneyActivities
from channels import build_channels
from touchflow.db import make_engine
from touchflow.rendering import Renderer
from touchflow.settings import Settings
from touchflow.store import Store
from workflows import REGISTRY, JourneySpec


def build_activities(settings: Settings, store: Store | None = None) -> JourneyActivities:
    store = store or Store(make_engine(settings.resolved_database_url))
    return JourneyActivities(
        store=store,
        channels=build_channels(settings),
        renderer=Renderer(settings.templates_dir, settings.default_locale),
        settings=settings,
    )


def build_worker(
    client: Client,
    settings: Settings,
    activities: JourneyActivities,
    journeys: Iterable[JourneySpec] = REGISTRY.values(),
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[spec.workflow for spec in journeys],
        activities=[
            activities.enter_journey,
            activities.leave_journey,
            activities.deliver_step,
            CouponActivities(activities.store, settings).issue_coupon,
        ],
        max_concurrent_activities=100,
    )
