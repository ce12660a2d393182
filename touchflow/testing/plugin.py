"""touchflow's pytest plugin (loaded wherever touchflow is installed): fixtures for journey tests.

- `journeys`: a `JourneyHarness`, the worker for `journey_registry` on a time-skipping server, SMTP on
  loopback.
- `journey_registry`: which journeys run. Override it (`registry_of(MyJourney, timings={...})`); by default
  the built-ins and the modules of the `touchflow_journeys` ini option.
- `journey_settings`: engine settings for the harness (`{"frequency_caps": "1/1d"}`); override it.
- `smtp`: the loopback SMTP server the harness sends to (`smtp.messages`, `await smtp.wait_for(n)`).
- `sqlite_store`, `make_settings`: the harness's store, and the settings maker it uses.
- `time_skipping_env`, `own_time_skipping_env`: a test server for the session, or for one test.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import (
    JourneyHarness,
    SmtpInbox,
    make_test_settings,
    run_journeys,
    smtp_server,
    start_time_skipping,
)
from touchflow.testing import (
    sqlite_store as open_sqlite_store,
)
from touchflow.workflows.registry import Registry, load_registry

try:
    import pytest_asyncio
except ImportError:  # installed without the `testing` extra: say so where a journey test asks for a fixture
    pytest_asyncio = None  # type: ignore[assignment]


def _async_fixture(**kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    if pytest_asyncio is not None:
        return pytest_asyncio.fixture(**kwargs)

    def missing(function: Callable[..., Any]) -> Any:
        def fail() -> None:
            pytest.fail("touchflow's journey fixtures need pytest-asyncio: pip install 'touchflow[testing]'")

        fail.__name__ = function.__name__
        return pytest.fixture(fail)

    return missing


def pytest_configure(config: pytest.Config) -> None:
    # Journey modules import as they do under `touchflow dev`: from the project's folder.
    root = str(config.rootpath)
    if root not in sys.path:
        sys.path.insert(0, root)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "touchflow_journeys",
        "modules whose @journey classes the `journeys` fixture runs beside the built-ins (comma-separated)",
        default="",
    )


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test (state under tmp_path, a test key and secret, no quiet hours or caps)."""

    def make(**overrides: Any) -> Settings:
        return make_test_settings(tmp_path / ".touchflow", **overrides)

    return make


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store in tmp_path."""
    with open_sqlite_store(tmp_path) as store:
        yield store


@pytest.fixture
def smtp() -> Iterator[SmtpInbox]:
    with smtp_server() as inbox:
        yield inbox


@_async_fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@_async_fixture()
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server for one test (it starts in about 0.1 s): runs and clock that no other test shares, so
    a long-lived journey left open cannot hold up time skipping for the next test."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
def journey_registry(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Registry:
    """The journeys the `journeys` worker runs; override it to choose (`touchflow.testing.registry_of`)."""
    modules = [name.strip() for name in str(request.config.getini("touchflow_journeys")).split(",")]
    return load_registry(make_settings(journeys=[name for name in modules if name]), environ={})


@pytest.fixture
def journey_settings() -> dict[str, Any]:
    """Extra engine settings for the `journeys` worker; a test module overrides this fixture."""
    return {}


@_async_fixture()
async def journeys(
    own_time_skipping_env: WorkflowEnvironment,
    sqlite_store: Store,
    smtp: SmtpInbox,
    make_settings: Callable[..., Settings],
    journey_settings: dict[str, Any],
    journey_registry: Registry,
) -> AsyncIterator[JourneyHarness]:
    """Every journey of `journey_registry` on the time-skipping server, real activities, loopback SMTP."""
    settings = make_settings(
        **{"smtp_port": smtp.port, "task_queue": f"tq-{uuid.uuid4().hex[:8]}", **journey_settings}
    )
    async with run_journeys(own_time_skipping_env, sqlite_store, settings, journey_registry) as harness:
        yield harness
