"""Journeys as code. `REGISTRY` is the list the worker runs and the router routes events to."""

from __future__ import annotations

from workflows.base import (
    Journey,
    JourneyEvent,
    JourneyInput,
    JourneySpec,
    Reentry,
    Stage,
    Step,
    journey,
)
from workflows.welcome import Welcome

__all__ = [
    "REGISTRY",
    "Journey",
    "JourneyEvent",
    "JourneyInput",
    "JourneySpec",
    "Reentry",
    "Stage",
    "Step",
    "journey",
]

REGISTRY: dict[str, JourneySpec] = {spec.name: spec for spec in (Welcome.spec,)}
