"""The built-in journeys: what the worker runs and the router routes events to. Add yours here."""

from __future__ import annotations

from touchflow.workflows.abandoned_cart import AbandonedCart
from touchflow.workflows.base import JourneySpec
from touchflow.workflows.loyalty import Loyalty
from touchflow.workflows.post_purchase import PostPurchase
from touchflow.workflows.welcome import Welcome

REGISTRY: dict[str, JourneySpec] = {
    journey.spec.name: journey.spec for journey in (Welcome, AbandonedCart, PostPurchase, Loyalty)
}
