"""The registry touchflow's own journey tests run: every built-in journey plus the channel tests' probe.

The harness itself is the public one, `touchflow.testing` (its pytest plugin gives the `journeys` fixture).
"""

from __future__ import annotations

import json

from temporalio.client import WorkflowHistory

from tests.support.probe import Probe
from touchflow.testing import registry_of

TEST_REGISTRY = registry_of(Probe, builtins=True)


def delivery_attempts(history: WorkflowHistory) -> list[int]:
    """The attempt number each `deliver_step` of a run finished on, in order, from its history: a local
    activity's marker (`core_local_activity`) carries the attempt it completed or failed on for good."""
    attempts = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                data = json.loads(marker.details["data"].payloads[0].data)
                if data["activity_type"] == "deliver_step":
                    attempts.append(data["attempt"])
    return attempts
