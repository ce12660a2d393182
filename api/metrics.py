"""`GET /metrics` (Prometheus text format) and the middleware that times every request by route template."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchflow.metrics import ApiMetrics

router = APIRouter(tags=["health"])

UNMATCHED = "unmatched"


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Plain `def`: the outbox query of the scrape runs in FastAPI's thread pool."""
    api_metrics: ApiMetrics = request.app.state.metrics
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)


class TimeRequests:
    """Pure ASGI middleware: each request's time to its last byte, labelled by the route that took it (its
    template, `/v1/customers/{customer_id}`), never the raw path: one series per route, however many ids."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.http_latency.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
