"""OpenTelemetry: one trace from POST /v1/events through the outbox, the relay's signal-with-start, the
workflow and deliver_step to the provider call (an in-memory exporter; Temporal's time-skipping server)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import API_KEY
from tests.support.harness import TEST_REGISTRY
from touchflow import tracing
from touchflow.api.main import create_app
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import connect
from touchflow.testing import SmtpInbox
from touchflow.worker import build_activities, build_worker


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.shutdown()


async def test_one_trace_from_the_request_to_the_provider_call(
    spans: InMemorySpanExporter,
    own_time_skipping_env: WorkflowEnvironment,
    sqlite_store: Store,
    tmp_path: Path,
    smtp: SmtpInbox,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'touchflow.db'}",
        temporal_address=own_time_skipping_env.client.service_client.config.target_host,
        task_queue=f"tq-{uuid.uuid4().hex[:8]}",
        smtp_port=smtp.port,
    )
    client = await connect(settings)  # with the tracing interceptor: tracing is on
    worker = build_worker(
        client, settings, build_activities(settings, TEST_REGISTRY, sqlite_store), TEST_REGISTRY
    )
    app = create_app(settings, TEST_REGISTRY, run_relay=False)
    async with worker:
        with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
            api.post("/v1/customers", json={"id": "t-1", "email": "t1@example.com"})
            assert (
                api.post(
                    "/v1/events", json={"id": "e-t1", "customer_id": "t-1", "name": "signed_up"}
                ).status_code
                == 202
            )
        # The relay runs apart from the request (another API process could take the entry).
        assert await app.state.relay.relay_once() is False
        await smtp.wait_for(1)

    finished = {span.name: span for span in spans.get_finished_spans()}
    request = finished["POST /v1/events"]
    provider_call = finished["send email"]
    trace = request.context.trace_id
    assert provider_call.context.trace_id == trace
    for name in (
        "relay event",
        "SignalWithStartWorkflow:welcome",
        "RunWorkflow:welcome",
        "RunActivity:deliver_step",
    ):
        assert finished[name].context.trace_id == trace, name
    # The provider call is the activity's child, the activity the workflow's: the chain, not just one id.
    by_id = {span.context.span_id: span for span in spans.get_finished_spans()}
    chain = []
    span = provider_call
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span.name)
    assert "RunActivity:deliver_step" in chain and "relay event" in chain and chain[-1] == "POST /v1/events"


def test_tracing_is_off_by_default_and_on_with_an_endpoint(make_settings: Callable[..., Settings]) -> None:
    tracing.configure(make_settings(), "touchflow-api")
    assert not tracing.enabled() and tracing.temporal_interceptors() == []
    assert tracing.current_traceparent() is None
    try:
        # The collector's base URL, as people give it; nothing is sent until a span ends.
        tracing.configure(make_settings(otel_endpoint="http://127.0.0.1:4318"), "touchflow-api")
        assert tracing.enabled() and len(tracing.temporal_interceptors()) == 1
    finally:
        tracing.shutdown()
