"""A harness for journey tests: a worker on the time-skipping server with the real activities, store and
channels, and a `post` that sends an event the way the API does (store, then relay)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.support.probe import Probe
from tests.support.waiting import eventually
from touchflow.activities.journey import JourneyActivities
from touchflow.models import EventIn
from touchflow.router import Relay, routed_event_names
from touchflow.settings import Settings
from touchflow.store import Store
from touchflow.workflows.base import JourneyOutcome, JourneySpec, JourneyState
from touchflow.workflows.registry import REGISTRY

# Every built-in journey plus the probe journey of the channel tests.
TEST_REGISTRY: dict[str, JourneySpec] = {**REGISTRY, Probe.spec.name: Probe.spec}
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class JourneyHarness:
    env: WorkflowEnvironment
    store: Store
    settings: Settings
    relay: Relay
    activities: JourneyActivities
    registry: dict[str, JourneySpec] = field(default_factory=lambda: TEST_REGISTRY)

    async def post(
        self,
        customer_id: str,
        name: str,
        properties: dict[str, Any] | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> WorkflowHandle[Any, Any] | None:
        """Ingest one event and relay it; returns the handle of the journey it starts, if any."""
        event = EventIn(
            id=event_id or f"{name}-{uuid.uuid4().hex[:12]}",
            customer_id=customer_id,
            name=name,
            properties=properties or {},
            timestamp=timestamp,
        )
        self.store.ingest_events([event], routed_event_names(self.registry))
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

    @staticmethod
    async def state(handle: WorkflowHandle[Any, Any]) -> JourneyState:
        return await handle.query("get_state", result_type=JourneyState)

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

    async def outcome(self, handle: WorkflowHandle[Any, Any]) -> JourneyOutcome:
        """Wait for the run to end, letting the test server skip time meanwhile.

        Handles the router started are not the test client's own, so the skipping is unlocked here
        (the SDK does it by itself only for handles `start_workflow` returned to the test).
        """
        async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            outcome: JourneyOutcome = await handle.result()
        return outcome
