"""Channel adapters: one file per channel, one shared contract (`channels.base`), an explicit registry."""

from __future__ import annotations

from channels.base import Channel, OutboundMessage, Reach, Receipt
from channels.console import Console
from channels.email import Email
from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from touchflow.settings import Settings

__all__ = [
    "REGISTRY",
    "Channel",
    "DeliveryError",
    "OutboundMessage",
    "PermanentDeliveryError",
    "Reach",
    "Receipt",
    "RetryableDeliveryError",
    "build_channels",
]

REGISTRY: dict[str, type[Channel]] = {
    Email.name: Email,
    Console.name: Console,
}


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel the settings configure, by the name a journey step uses."""
    return {name: cls.from_settings(settings) for name, cls in REGISTRY.items()}
