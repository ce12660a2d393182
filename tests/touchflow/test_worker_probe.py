"""A worker's probe port: its metrics with the Temporal SDK's appended, /healthz, /readyz."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from temporalio.testing import WorkflowEnvironment

from tests.support.harness import TEST_REGISTRY
from touchflow.cli import _probe_port, _worker_runtime
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import connect, free_port
from touchflow.worker import build_activities, build_worker


async def test_the_probe_port_answers_metrics_health_and_readiness(
    time_skipping_env: WorkflowEnvironment, sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = make_settings(
        temporal_address=time_skipping_env.client.service_client.config.target_host,
        task_queue=f"tq-{uuid.uuid4().hex[:8]}",
        worker_metrics_port=port,
    )
    runtime, sdk_metrics = _worker_runtime(settings)
    client = await connect(settings, runtime=runtime)
    activities = build_activities(settings, TEST_REGISTRY, sqlite_store)
    worker = build_worker(client, settings, activities, TEST_REGISTRY)
    async with (
        worker,
        _probe_port(settings, activities, client, worker, sdk_metrics),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")
        metrics = await http.get("/metrics")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "migrations": "ok",
        "temporal": "ok",
        "worker": "ok",
    }
    assert alive.json() == {"status": "ok"}
    assert "# TYPE touchflow_deliveries_total counter" in metrics.text
    assert "temporal_request{" in metrics.text  # the SDK's own, from its loopback endpoint
