"""Onsite inbox: the message is stored for the customer and shown by inbox.js on the brand's own site.

The channel knows no database: it hands the message to an `InboxSink` that the worker wires in (the store).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from touchflow.channels.base import Channel, OutboundMessage, Reach, Receipt
from touchflow.channels.errors import PermanentDeliveryError
from touchflow.urls import linkable

# Kept in step with the inbox table's columns (touchflow.models.InboxMessage).
LIMITS = {"title": 200, "body": 4000, "url": 2000}


class InboxSink(Protocol):
    """Where onsite messages go. `save` is idempotent by `key` and returns the stored message's id; it raises
    RetryableDeliveryError when it cannot store right now (database unreachable)."""

    async def save(self, customer_id: str, key: str, title: str, body: str, url: str | None) -> str: ...


class Onsite(Channel):
    name = "onsite"
    reaches = Reach.CUSTOMER_ID
    parts: ClassVar[tuple[str, ...]] = ("title", "body", "url")
    required_parts: ClassVar[tuple[str, ...]] = ("title", "body")

    def __init__(self, sink: InboxSink) -> None:
        self.sink = sink

    async def send(self, message: OutboundMessage) -> Receipt:
        content = {part: message.content.get(part, "").strip() for part in self.parts}
        for part in self.required_parts:
            if not content[part]:
                raise PermanentDeliveryError(f"onsite: the template rendered no `{part}` block", code="empty")
        for part, limit in LIMITS.items():
            if len(content[part]) > limit:
                raise PermanentDeliveryError(
                    f"onsite: `{part}` is {len(content[part])} characters, at most {limit} fit",
                    code="too_long",
                )
        url = content["url"] or None
        if url is not None and not linkable(url):
            # The inbox renders it as a link: only web addresses, never `javascript:` or `data:`.
            raise PermanentDeliveryError("onsite: `url` must be an http(s) URL or a path", code="bad_url")
        ident = await self.sink.save(message.address, message.key, content["title"], content["body"], url)
        return Receipt(provider_id=f"inbox:{ident}")
