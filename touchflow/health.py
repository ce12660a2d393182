"""Readiness (database and Temporal reachable, schema current), shared by the API's `/readyz` and the worker's
probe port, and that port's small app: `/metrics`, `/healthz`, `/readyz` for a worker process.

A check answers "ok" or why not, in words an operator can act on, never a secret or an address's password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from touchflow.db import schema_problem
from touchflow.metrics import WorkerMetrics
from touchflow.storage import Store
from touchflow.temporal import TemporalUnavailable

log = logging.getLogger(__name__)

OK = "ok"
CHECK_TIMEOUT = 3.0


@dataclass
class Readiness:
    """The checks a process is ready by; `extra` adds its own (the worker: polling)."""

    store: Store
    temporal: Callable[[], Awaitable[Client]]
    timeout: float = CHECK_TIMEOUT

    async def check(self) -> dict[str, str]:
        checks = {"database": self._database, "migrations": self._migrations, "temporal": self._temporal}
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), self.timeout) for check in checks.values()), return_exceptions=True
        )
        return {name: _answer(result) for name, result in zip(checks, results, strict=True)}

    async def _database(self) -> str:
        await asyncio.to_thread(self.store.outbox.size)
        return OK

    async def _migrations(self) -> str:
        return await asyncio.to_thread(schema_problem, self.store.engine) or OK

    async def _temporal(self) -> str:
        try:
            client = await self.temporal()
        except TemporalUnavailable as exc:
            return str(exc)  # names the address and the setting
        await client.service_client.check_health()
        return OK


def _answer(result: str | BaseException) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    # The type only: a driver's message can carry the connection string.
    return f"unavailable ({type(result).__name__})"


def readiness_answer(checks: dict[str, str]) -> tuple[int, dict[str, object]]:
    """HTTP status and body of `/readyz`: 200 when every check is ok, else 503 naming the failing ones."""
    ready = all(value == OK for value in checks.values())
    return (200 if ready else 503), {"status": "ready" if ready else "not ready", **checks}


def probe_app(
    metrics: WorkerMetrics,
    readiness: Readiness,
    running: Callable[[], bool],
    sdk_metrics_url: str | None = None,
) -> Starlette:
    """The worker's probe port: its metrics (with the Temporal SDK's, fetched from the SDK's own loopback
    endpoint and appended, so Prometheus scrapes one target per worker), liveness and readiness."""

    async def metrics_page(request: Request) -> Response:
        body = generate_latest(metrics.registry)
        if sdk_metrics_url is not None:
            try:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    sdk = await client.get(sdk_metrics_url)
                body += b"\n" + sdk.content
            except httpx.HTTPError as exc:
                log.warning("the Temporal SDK's metrics did not answer: %s", type(exc).__name__)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> JSONResponse:
        alive = running()
        return JSONResponse({"status": "ok" if alive else "stopped"}, status_code=200 if alive else 503)

    async def readyz(request: Request) -> JSONResponse:
        checks = await readiness.check()
        checks["worker"] = OK if running() else "not polling"
        status, body = readiness_answer(checks)
        return JSONResponse(body, status_code=status)

    return Starlette(
        routes=[
            Route("/metrics", metrics_page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
