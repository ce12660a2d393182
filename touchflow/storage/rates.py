"""Rate windows: fixed one-window counters per API key (or client address), shared by every API process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, select, update

from touchflow.models import RateWindow
from touchflow.storage.base import Repository, insert_ignore, table


@dataclass(frozen=True)
class RateCount:
    """A fixed rate window after a request was counted in it (or refused, `admitted` False)."""

    admitted: bool
    count: int
    resets_at: float  # when the window ends, in seconds since the epoch


class RateWindows(Repository):
    def count(
        self, key_id: str, window_seconds: int, now: float, cost: int = 1, limit: int | None = None
    ) -> RateCount:
        """Count `cost` in the key's current fixed window, unless that would take it past `limit`: then
        nothing is counted and `admitted` is False. Every API process shares the windows.

        One conditional `UPDATE` decides, so concurrent requests never count past the limit together.
        """
        window = int(now // window_seconds) * window_seconds
        windows = table(RateWindow)
        this = and_(windows.c.key_id == key_id, windows.c.window == window)
        with self.engine.begin() as conn:
            opened = insert_ignore(
                conn,
                RateWindow,
                [{"key_id": key_id, "window": window, "count": 0}],
                returning=windows.c.key_id,
            )
            if opened:  # the first request of a new window: forget the old ones
                conn.execute(delete(windows).where(windows.c.key_id == key_id, windows.c.window < window))
            fits = this if limit is None else and_(this, windows.c.count + cost <= limit)
            counted = conn.execute(
                update(windows).where(fits).values(count=windows.c.count + cost).returning(windows.c.count)
            ).scalar_one_or_none()
            if counted is not None:
                return RateCount(admitted=True, count=int(counted), resets_at=window + window_seconds)
            refused = conn.execute(select(windows.c.count).where(this)).scalar_one()
        return RateCount(admitted=False, count=int(refused), resets_at=window + window_seconds)

    def peek(self, key_id: str, window_seconds: int, now: float) -> RateCount:
        """What the key's current window holds, counting nothing."""
        window = int(now // window_seconds) * window_seconds
        windows = table(RateWindow)
        with self.engine.connect() as conn:
            this = and_(windows.c.key_id == key_id, windows.c.window == window)
            count = conn.scalar(select(windows.c.count).where(this))
        return RateCount(admitted=True, count=int(count or 0), resets_at=window + window_seconds)
