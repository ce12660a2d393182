"""Liveness and readiness: `/healthz` (the process answers, the database with it, and how much the relay
still has to hand to Temporal) and `/readyz` (database, schema and Temporal: ready to take traffic)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from touchflow.api.deps import StoreDep
from touchflow.health import Readiness, readiness_answer

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(store: StoreDep, response: Response) -> dict[str, object]:
    try:
        pending = await asyncio.to_thread(store.outbox.size)
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "database": type(exc).__name__}
    return {"status": "ok", "database": "ok", "relay_pending": pending}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 `{"status": "ready", "database": "ok", "migrations": "ok", "temporal": "ok"}`, or 503 with each
    check that failed saying why (`touchflow migrate`, Temporal unreachable)."""
    readiness: Readiness = request.app.state.readiness
    code, body = readiness_answer(await readiness.check())
    return JSONResponse(body, status_code=code)
