"""The Zalo OA's shared state: its OAuth token pair, rotated at most once across every worker, and the pause
on ZNS after a balance or payment error."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from touchflow.db import read_modify_write
from touchflow.models import ZaloToken, utcnow
from touchflow.storage.base import Repository, insert_ignore, locked, table


class ZaloTokens(Repository):
    def get(self, app_id: str) -> ZaloToken | None:
        with self.session() as session:
            return session.get(ZaloToken, app_id)

    def rotate(
        self,
        app_id: str,
        seed: str,
        rejected: str | None,
        refresh: Callable[[str], tuple[str, str, float]],
        fresh_for: timedelta,
    ) -> ZaloToken:
        """A usable access token, refreshing the pair at most once across every worker and process.

        Holds a lock on the app's row (`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite)
        while it decides and refreshes. After taking it, it re-reads: when another worker already replaced
        the `rejected` token, that worker's token is the answer and nothing is refreshed. Otherwise
        `refresh(refresh_token)` -> (access token, new refresh token, expires in seconds) runs inside the
        lock, and the new pair is committed before this returns: a refresh token is single-use, so the
        rotated one must be on disk before anybody sends with its access token. An error in `refresh`
        rolls back and leaves the stored pair as it was.
        """
        seed_hash = hashlib.sha256(seed.encode()).hexdigest() if seed else ""
        tokens = table(ZaloToken)
        # The write lock is taken before the read: two readers must not both refresh.
        with read_modify_write(self.engine) as conn:
            if seed:
                seeded = ZaloToken(app_id=app_id, refresh_token=seed, seed_hash=seed_hash)
                insert_ignore(conn, ZaloToken, [seeded.model_dump()])
            found = conn.execute(locked(conn, select(tokens).where(tokens.c.app_id == app_id))).one_or_none()
            if found is None:
                raise LookupError(
                    f"no Zalo refresh token stored for app {app_id}: set TOUCHFLOW_ZALO_REFRESH_TOKEN"
                )
            token = ZaloToken.model_validate(found._mapping)
            now = utcnow()
            if seed and token.seed_hash != seed_hash:
                # The operator set a new seed (the old chain broke or expired): start again from it.
                token.refresh_token, token.access_token, token.seed_hash = seed, None, seed_hash
            elif (
                token.access_token
                and token.access_token != rejected
                and token.expires_at is not None
                and token.expires_at > now + fresh_for
            ):
                return token
            access_token, refresh_token, expires_in = refresh(token.refresh_token)
            token.access_token, token.refresh_token = access_token, refresh_token
            token.expires_at = now + timedelta(seconds=expires_in)
            token.rotations += 1
            token.updated_at = now
            conn.execute(
                update(tokens).where(tokens.c.app_id == app_id).values(token.model_dump(exclude={"app_id"}))
            )
        return token

    def held(self, app_id: str) -> tuple[datetime, str] | None:
        """Until when ZNS is paused for the app's OA, and Zalo's code that paused it; None when it is not."""
        token = self.get(app_id)
        if token is None or token.held_until is None:
            return None
        return token.held_until, token.held_because or ""

    def hold(self, app_id: str, because: str, now: datetime, until: datetime) -> bool:
        """Pause ZNS for the app's OA until `until`, unless it is paused already (at `now`).

        True when this call started the pause: one statement decides, so of many workers hearing the same
        error at once exactly one starts it (and tells the operator).
        """
        tokens = table(ZaloToken)
        with self.engine.begin() as conn:
            started = conn.execute(
                update(tokens)
                .where(
                    tokens.c.app_id == app_id,
                    or_(tokens.c.held_until.is_(None), tokens.c.held_until <= now),
                )
                .values(held_until=until, held_because=because[:16])
            )
        return bool(started.rowcount)
