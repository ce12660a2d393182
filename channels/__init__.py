"""Channel adapters: one file per channel, one shared contract (`channels.base`), an explicit registry."""

from __future__ import annotations

from channels.base import Channel, OutboundMessage, Reach, Receipt
from channels.console import Console
from channels.email import Email
from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from channels.onsite import InboxSink, Onsite
from touchflow.settings import Settings

__all__ = [
    "REGISTRY",
    "Channel",
    "DeliveryError",
    "InboxSink",
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
    Onsite.name: Onsite,
}


def build_channels(settings: Settings, inbox: InboxSink | None = None) -> dict[str, Channel]:
    """Every channel the settings configure, by the name a journey step uses.

    `onsite` stores messages, and channels know no database: it is built only when the caller (the worker)
    hands in the `inbox` that stores them.
    """
    channels = {name: cls.from_settings(settings) for name, cls in REGISTRY.items() if cls is not Onsite}
    if inbox is not None:
        channels[Onsite.name] = Onsite(inbox)
    return channels
