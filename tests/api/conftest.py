"""The API under uvicorn on a free port, with a store of its own engine: what another process would see."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import SECRET
from tests.support.server import serving
from touchflow.api.main import create_app
from touchflow.db import make_engine
from touchflow.settings import Settings
from touchflow.storage import Store

SHOP = "https://shop.example"


def customer_token(customer_id: str, secret: str = SECRET) -> str:
    """What the site's backend computes (docs/channels/onsite.md), written out independently of `Signer`."""
    return hmac.new(secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def customer_headers(customer_id: str) -> dict[str, str]:
    return {"X-Touchflow-Customer": customer_id, "X-Touchflow-Token": customer_token(customer_id)}


@dataclass
class RunningApi:
    url: str
    client: httpx.AsyncClient
    settings: Settings
    # Its own engine, not the API's: a message added here is one a worker process stored.
    store: Store
    app: FastAPI  # the app being served (its state: the signer, the inbox hub, the API's own store)


@contextlib.asynccontextmanager
async def running_api(
    make_settings: Callable[..., Settings], db_url: str, **overrides: Any
) -> AsyncIterator[RunningApi]:
    """create_app under uvicorn on `db_url` (migrated already), polling fast, allowing the SHOP origin."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "inbox_poll_interval": "50ms",
        "inbox_allowed_origins": [SHOP],
    }
    settings = make_settings(**(values | overrides))
    engine = make_engine(db_url)
    app = create_app(settings, run_relay=False)
    try:
        async with (
            serving(app) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield RunningApi(url, client, settings, Store(engine), app)
    finally:
        engine.dispose()


@pytest.fixture
async def inbox_api(make_settings: Callable[..., Settings], db_url: str) -> AsyncIterator[RunningApi]:
    """The API on each database (SQLite and PostgreSQL)."""
    async with running_api(make_settings, db_url) as api:
        yield api
