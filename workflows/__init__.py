"""Journeys as code: the building blocks a journey imports. The list of journeys is `workflows.registry`.

This package's `__init__` imports only the journey base on purpose: Temporal's sandbox re-imports a journey's
module (and so this package) for every run, and must not re-import every other journey with it.
"""

from __future__ import annotations

from touchflow.workflows.base import (
    Journey,
    JourneyEvent,
    JourneyInput,
    JourneySpec,
    Reentry,
    Stage,
    Step,
    journey,
)

__all__ = [
    "Journey",
    "JourneyEvent",
    "JourneyInput",
    "JourneySpec",
    "Reentry",
    "Stage",
    "Step",
    "journey",
]
