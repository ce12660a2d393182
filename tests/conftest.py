"""Shared fixtures: real parts on loopback, on ports the tests pick themselves.

- `db_url` / `store`: every storage test runs on SQLite and on PostgreSQL (127.0.0.1:5432, database `test`,
  or TOUCHFLOW_TEST_POSTGRES_URL), each session in a schema of its own. In CI a missing PostgreSQL fails.
- `vapid` / `push_service`: a VAPID key pair, and a push service that checks VAPID and decrypts what it gets.
- `no_network`: every name lookup and connection fails and is recorded (tests of addresses never to reach).
- From touchflow.testing's pytest plugin, the same one shops use: `journeys` (the harness), `smtp`,
  `make_settings`, `sqlite_store`, `time_skipping_env`, `journey_settings`; `journey_registry` is set here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import SQLModel

from tests.support.harness import TEST_REGISTRY
from tests.support.network import no_network  # noqa: F401  (no lookups, no connections)
from tests.support.push_service import PushService
from tests.support.zalo import zalo  # noqa: F401  (the loopback Zalo server fixture)
from touchflow.api.main import create_app
from touchflow.db import make_engine, migrate
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import free_port
from touchflow.testing import TEST_API_KEY, TEST_SECRET
from touchflow.vapid import VapidKeys, generate
from touchflow.workflows.registry import Registry

POSTGRES_URL = os.environ.get(
    "TOUCHFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
API_KEY = TEST_API_KEY
SECRET = TEST_SECRET

# -- databases --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database for this session, migrated; dropped at the end."""
    schema = f"tf_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'touchflow.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    url: str = request.getfixturevalue("postgres_schema_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    yield Store(engine)
    engine.dispose()


# -- web push ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vapid() -> VapidKeys:
    return generate()


@pytest.fixture
async def push_service(vapid: VapidKeys) -> AsyncIterator[PushService]:
    service = PushService(host="127.0.0.1", port=free_port(), application_server_key=vapid.public_key)
    await service.start()
    yield service
    await service.stop()


# -- journeys (the harness and its fixtures are touchflow.testing's pytest plugin) --------------------------


@pytest.fixture
def journey_registry() -> Registry:
    """Every built-in journey plus the probe; a test module overrides this fixture to run its own."""
    return TEST_REGISTRY


# -- the API ----------------------------------------------------------------------------------------------


@pytest.fixture
def api_settings() -> dict[str, Any]:
    """Extra settings for the `api` app; a test module overrides this fixture to add its own."""
    return {}


@pytest.fixture
def api(
    db_url: str, make_settings: Callable[..., Settings], api_settings: dict[str, Any]
) -> Iterator[TestClient]:
    """The API on each database, authenticated with a valid key; its relay is off (nothing to relay to)."""
    app = create_app(make_settings(database_url=db_url, **api_settings), run_relay=False)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client
