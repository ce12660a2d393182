"""The FastAPI app: profiles and events in, the onsite inbox, health out. OpenAPI at /docs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from touchflow import tracing
from touchflow.api.cors import CORSFor
from touchflow.api.errors import touchflow_error_handler, validation_error_handler
from touchflow.api.inbox_hub import InboxHub
from touchflow.api.limits import BodySizeLimit, RefuseNulInUrl
from touchflow.api.metrics import TimeRequests
from touchflow.api.metrics import router as metrics_router
from touchflow.api.routes import (
    broadcasts,
    customers,
    dashboard,
    dev,
    events,
    health,
    inbox,
    journeys,
    push,
    segment,
    segments,
    tracking,
    unsubscribe,
    webhooks,
)
from touchflow.apikeys import parse_keys
from touchflow.db import make_engine, migrate
from touchflow.errors import TouchflowError
from touchflow.health import Readiness
from touchflow.metrics import ApiMetrics
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.signing import Signer
from touchflow.storage import Store
from touchflow.temporal import connect
from touchflow.vapid import load_private_key, public_key
from touchflow.visitors import sweep_forever
from touchflow.workflows.registry import Registry, load_registry


def create_app(settings: Settings, registry: Registry | None = None, *, run_relay: bool = True) -> FastAPI:
    """Build the app; `run_relay=False` leaves the outbox to another process (tests of the API alone).

    `registry` is the journeys the relay routes to and the funnels count; without one, the app loads it
    from the settings (TOUCHFLOW_BUILTIN_JOURNEYS, TOUCHFLOW_JOURNEYS).
    """
    registry = registry if registry is not None else load_registry(settings)
    if not settings.api_keys:
        raise ValueError("TOUCHFLOW_API_KEYS is empty: set at least one API key (comma-separated)")
    engine = make_engine(settings.resolved_database_url)
    store = Store(engine)
    store.segments.configure(settings, registry)
    metrics = ApiMetrics(registry.routed)
    metrics.watch_outbox(store.outbox.backlog)
    relay = Relay(
        store,
        partial(connect, settings),
        settings.task_queue,
        settings.relay_interval,
        settings.relay_batch_size,
        registry,
        metrics=metrics,
    )

    inbox_hub = InboxHub(store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await asyncio.to_thread(migrate, engine)
        tasks = [asyncio.create_task(sweep_forever(store, settings.anonymous_ttl))]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await inbox_hub.close()
            engine.dispose()

    app = FastAPI(
        title="touchflow",
        version="0.1.0",
        summary="Customer journeys as code: events in, messages out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.relay = relay
    app.state.inbox_hub = inbox_hub
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.readiness = Readiness(store, relay.client)
    app.state.api_keys = parse_keys(settings.api_keys)
    app.state.signer = Signer.from_settings(settings) if settings.secret_key.get_secret_value() else None
    vapid_key = settings.vapid_private_key.get_secret_value()
    app.state.vapid_public_key = public_key(load_private_key(vapid_key)) if vapid_key else None
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(TouchflowError, touchflow_error_handler)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, as_bad_request=segment.PATHS)
    app.add_middleware(RefuseNulInUrl)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(customers.router)
    app.include_router(events.router)
    app.include_router(segment.router)
    app.include_router(segments.router)
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)
    app.include_router(journeys.router)
    app.include_router(journeys.stages_router)
    app.include_router(broadcasts.router)
    app.include_router(dashboard.router)
    app.include_router(tracking.router)
    app.include_router(inbox.router)
    app.add_middleware(
        CORSFor,
        applies=inbox.is_inbox_path,
        origins=settings.inbox_allowed_origins,
        headers=inbox.CORS_HEADERS,
    )
    app.add_middleware(
        CORSFor,
        applies=segment.is_tracking_path,
        origins=settings.track_allowed_origins,
        headers=segment.CORS_HEADERS,
    )
    app.include_router(push.router)
    app.include_router(push.public_router)
    if settings.dev_mail_dir is not None:
        app.include_router(dev.router)
    app.add_middleware(TimeRequests, metrics=metrics)  # outermost: it times what every other layer adds
    tracing.instrument(app)
    return app
