"""The built-in journeys: what the worker runs and the router routes events to. Add yours here."""

from __future__ import annotations

from workflows.abandoned_cart import AbandonedCart
from workflows.base import JourneySpec
from workflows.loyalty import Loyalty
from workflows.post_purchase import PostPurchase
from workflows.welcome import Welcome

REGISTRY: dict[str, JourneySpec] = {
    journey.spec.name: journey.spec for journey in (Welcome, AbandonedCart, PostPurchase, Loyalty)
}
