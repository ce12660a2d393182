"""The store as channels see it when they look for a customer's addresses (`channels.base.Directory`)."""

from __future__ import annotations

import asyncio
import json

from touchflow.activities.coalesce import Coalesced
from touchflow.channels import Recipient
from touchflow.storage import Store


class StoreDirectory:
    """Push subscriptions and suppressions from the store, run off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The checks of one moment (a batch's recipients) in one query.
        self._suppressed = Coalesced(store.deliveries.suppressed_among)

    async def push_subscriptions(self, customer_id: str) -> list[Recipient]:
        subscriptions = await asyncio.to_thread(self.store.push.of_customer, customer_id)
        return [Recipient(json.dumps(s.to_json()), s.id) for s in subscriptions]

    async def is_suppressed(self, channel: str, address: str) -> bool:
        return await self._suppressed((channel, address))
