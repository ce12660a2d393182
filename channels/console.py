"""Prints the rendered message: for demos and for trying a journey without any provider."""

from __future__ import annotations

import sys
from typing import ClassVar, TextIO

from touchflow.channels.base import Channel, OutboundMessage, Reach, Receipt


class Console(Channel):
    name = "console"
    reaches = Reach.CUSTOMER_ID
    parts: ClassVar[tuple[str, ...]] = ("subject", "title", "text", "body", "url")

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    async def send(self, message: OutboundMessage) -> Receipt:
        lines = [f"--- message {message.key} to customer {message.address}"]
        lines += [f"{part}: {value}" for part, value in message.content.items() if value]
        print("\n".join(lines), file=self.stream, flush=True)
        return Receipt(provider_id=message.key)
