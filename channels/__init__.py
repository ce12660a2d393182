"""Channel adapters: one file per channel, one shared contract (`channels.base`), an explicit registry."""

from __future__ import annotations

from channels.base import Channel, OutboundMessage, Reach, Receipt
from channels.console import Console
from channels.email import Email
from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from channels.zalo_zns import TokenProvider, ZaloZns
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
    "TokenProvider",
    "build_channels",
]

REGISTRY: dict[str, type[Channel]] = {
    Email.name: Email,
    Console.name: Console,
}


def build_channels(settings: Settings, *, zalo_tokens: TokenProvider | None = None) -> dict[str, Channel]:
    """Every channel the settings configure, by the name a journey step uses.

    `zalo_zns` joins when its settings are there and the caller hands it a token provider (the worker
    passes the database-backed one); otherwise a step's `zalo_zns` is "not configured" and falls back.
    """
    channels = {name: cls.from_settings(settings) for name, cls in REGISTRY.items()}
    if zalo_tokens is not None and ZaloZns.configured(settings):
        channels[ZaloZns.name] = ZaloZns.from_settings(settings, zalo_tokens)
    return channels
