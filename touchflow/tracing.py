"""OpenTelemetry tracing, off unless TOUCHFLOW_OTEL_ENDPOINT is set (`pip install 'touchflow[otel]'`).

One trace per event: the API's request span (FastAPI instrumentation) → its W3C `traceparent`, kept on the
outbox row → the relay's span and its signal-with-start (Temporal's TracingInterceptor carries the context
in the workflow's headers) → the workflow and `deliver_step` → the provider call (`send <channel>`).
Nothing here imports OpenTelemetry until tracing is configured, so the default install needs none of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from touchflow.errors import ConfigurationError
from touchflow.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from temporalio.client import Interceptor

# Requests that are probes, not work: no trace for them.
UNTRACED_URLS = "healthz,readyz,metrics"

_provider: TracerProvider | None = None


def configure(settings: Settings, service: str) -> None:
    """Export spans over OTLP/HTTP to TOUCHFLOW_OTEL_ENDPOINT as `service` (`touchflow-api`, ...)."""
    if not settings.otel_endpoint:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "TOUCHFLOW_OTEL_ENDPOINT is set but OpenTelemetry is not installed: pip install 'touchflow[otel]'"
        ) from None
    endpoint = settings.otel_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"  # the collector's base URL (`http://collector:4318`) is what people give
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(provider)


def install(provider: TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: off); tests install one with an in-memory exporter."""
    global _provider
    _provider = provider


def shutdown() -> None:
    """Export what is pending, stop, and trace no more (a process that ends does this at exit by itself)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> Tracer:
    assert _provider is not None, "tracing is off"
    return _provider.get_tracer("touchflow")


def temporal_interceptors() -> list[Interceptor]:
    """The client interceptor (a worker's too) that carries the trace through Temporal; none when off."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


def instrument(app: FastAPI) -> None:
    """A server span for each request (route template as its name), when tracing is on."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=UNTRACED_URLS)


def current_traceparent() -> str | None:
    """The active span's W3C `traceparent`, to keep with work another process picks up (the outbox)."""
    if _provider is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(
    name: str, *, parent: str | None = None, attributes: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """A span around a block, child of the current span or of `parent` (a stored `traceparent`); nothing
    when tracing is off. Attributes are ids and names only, never a customer's data."""
    if _provider is None:
        yield
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": parent}) if parent else None
    with tracer().start_as_current_span(name, context=context, attributes=dict(attributes or {})):
        yield
