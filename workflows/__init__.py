"""Journeys as code. `REGISTRY` is the list the worker runs and the router routes events to."""

from __future__ import annotations

from workflows.abandoned_cart import AbandonedCart
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
from workflows.loyalty import Loyalty
from workflows.post_purchase import PostPurchase
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

REGISTRY: dict[str, JourneySpec] = {
    journey.spec.name: journey.spec for journey in (Welcome, AbandonedCart, PostPurchase, Loyalty)
}
