"""Serve an ASGI app with uvicorn on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from touchflow.cli import _Server
from touchflow.temporal import free_port


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int | None = None, timeout: float = 10.0) -> AsyncIterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`) once the server accepts connections; stops it after."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + timeout
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"uvicorn did not start in {timeout}s")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
