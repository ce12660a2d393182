"""Journeys as code: the building blocks a journey imports. The list of journeys is `workflows.registry`.

This package's `__init__` imports only the journey base on purpose: the worker passes this package through
Temporal's sandbox (it is imported once, `touchflow.worker.WORKFLOW_RUNNER`), but a shop's journey module is
re-imported for every run, and importing it must not import every built-in journey with it.
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
