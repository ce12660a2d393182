"""Channel adapters: one file per channel, one shared contract (`channels.base`), an explicit registry."""

from __future__ import annotations

from touchflow.channels.base import Addressee, Channel, Directory, OutboundMessage, Reach, Receipt, Recipient
from touchflow.channels.console import Console
from touchflow.channels.email import Email
from touchflow.channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from touchflow.channels.onsite import InboxSink, Onsite
from touchflow.channels.web_push import WebPush
from touchflow.channels.zalo_zns import SendingHold, TokenProvider, ZaloZns
from touchflow.settings import Settings

__all__ = [
    "REGISTRY",
    "Addressee",
    "Channel",
    "DeliveryError",
    "Directory",
    "InboxSink",
    "OutboundMessage",
    "PermanentDeliveryError",
    "Reach",
    "Receipt",
    "Recipient",
    "RetryableDeliveryError",
    "SendingHold",
    "TokenProvider",
    "build_channels",
]

REGISTRY: dict[str, type[Channel]] = {
    Email.name: Email,
    Console.name: Console,
    Onsite.name: Onsite,
    ZaloZns.name: ZaloZns,
    WebPush.name: WebPush,
}
# Channels that need something besides settings: build_channels adds them when given it.
_NEEDS_MORE = {Onsite, ZaloZns}


def build_channels(
    settings: Settings,
    *,
    inbox: InboxSink | None = None,
    zalo_tokens: TokenProvider | None = None,
    zalo_hold: SendingHold | None = None,
) -> dict[str, Channel]:
    """Every channel the settings configure, by the name a journey step uses.

    Channels know no database, so the two that need one join only when the caller (the worker) hands in
    what they need: `onsite` the `inbox` that stores its messages, `zalo_zns` (when its settings are there)
    the database-backed token provider (and `zalo_hold`, the OA's pause after a balance error). Otherwise a
    step's channel is "not configured" and falls back.
    """
    channels = {name: cls.from_settings(settings) for name, cls in REGISTRY.items() if cls not in _NEEDS_MORE}
    if inbox is not None:
        channels[Onsite.name] = Onsite(inbox)
    if zalo_tokens is not None and ZaloZns.configured(settings):
        channels[ZaloZns.name] = ZaloZns.from_settings(settings, zalo_tokens, zalo_hold)
    return channels
