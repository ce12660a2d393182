"""The Zalo OA's shared state, seen by every worker through the database: the access token (the zalo_zns
token provider) and the pause after a balance or payment error (its sending hold).

Zalo refresh tokens are single-use and rotate, so two workers refreshing at once would break the chain:
`store.tokens.rotate` takes a row lock, re-reads, and refreshes only when nobody else did.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Self

from touchflow.channels.zalo_zns import Hold, ZaloOAuth
from touchflow.models import utcnow
from touchflow.settings import Settings
from touchflow.storage import Store

# Refresh a little before Zalo's expiry, so a token never dies between reading it and sending.
FRESH_FOR = timedelta(minutes=5)


class StoreTokenProvider:
    """`channels.zalo_zns.TokenProvider` backed by the `zalo_tokens` row of the app."""

    def __init__(self, store: Store, oauth: ZaloOAuth, *, app_id: str, seed: str) -> None:
        self.store = store
        self.oauth = oauth
        self.app_id = app_id
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Self:
        return cls(
            store,
            ZaloOAuth.from_settings(settings),
            app_id=settings.zalo_app_id,
            seed=settings.zalo_refresh_token.get_secret_value(),
        )

    async def access_token(self) -> str:
        stored = await asyncio.to_thread(self.store.tokens.get, self.app_id)
        if (
            stored is not None
            and stored.access_token
            and stored.expires_at is not None
            and stored.expires_at > utcnow() + FRESH_FOR
        ):
            return stored.access_token
        return await self._rotate(rejected=None)

    async def refresh(self, rejected: str) -> str:
        return await self._rotate(rejected=rejected)

    async def _rotate(self, rejected: str | None) -> str:
        token = await asyncio.to_thread(
            self.store.tokens.rotate, self.app_id, self.seed, rejected, self.oauth.refresh, FRESH_FOR
        )
        assert token.access_token is not None
        return token.access_token


class StoreSendingHold:
    """`channels.zalo_zns.SendingHold` backed by the `zalo_tokens` row of the app (`held_until`)."""

    def __init__(self, store: Store, *, app_id: str) -> None:
        self.store = store
        self.app_id = app_id

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Self:
        return cls(store, app_id=settings.zalo_app_id)

    async def held(self) -> Hold | None:
        found = await asyncio.to_thread(self.store.tokens.held, self.app_id)
        return Hold(*found) if found is not None else None

    async def hold(self, because: str, now: datetime, until: datetime) -> bool:
        return await asyncio.to_thread(self.store.tokens.hold, self.app_id, because, now, until)
