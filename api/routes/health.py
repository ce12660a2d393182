"""Liveness and readiness: the database answers, and how much the relay still has to hand to Temporal."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status

from touchflow.api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(store: StoreDep, response: Response) -> dict[str, object]:
    try:
        pending = await asyncio.to_thread(store.outbox.size)
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "database": type(exc).__name__}
    return {"status": "ok", "database": "ok", "relay_pending": pending}
