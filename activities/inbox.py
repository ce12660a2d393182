"""The onsite inbox the onsite channel writes to, backed by the store (the channel knows no database)."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import OperationalError

from touchflow.channels import RetryableDeliveryError
from touchflow.storage import Store


class StoreInbox:
    """The onsite channel's `InboxSink`: the store, run off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, customer_id: str, key: str, title: str, body: str, url: str | None) -> str:
        try:
            message = await asyncio.to_thread(
                self.store.inbox.add,
                key=key,
                customer_id=customer_id,
                title=title,
                body=body,
                action_url=url,
            )
        except OperationalError as exc:  # unreachable or locked database: Temporal retries the activity
            raise RetryableDeliveryError(f"onsite: inbox storage unavailable: {type(exc).__name__}") from None
        return str(message.id)
