"""Serve an ASGI app with uvicorn on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from touchflow.cli import _Server
from touchflow.temporal import free_port
from touchflow.testing import eventually


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int | None = None, timeout: float = 10.0) -> AsyncIterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`) once the server accepts connections; stops it after."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout, "uvicorn to start")
    if task.done():
        task.result()
        raise RuntimeError("uvicorn stopped before it started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
