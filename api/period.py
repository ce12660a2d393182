"""The period every figure is counted over: `since` (inclusive) and `until` (exclusive), the same for the
JSON API and the dashboard, so a page and the JSON it links to agree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query

from touchflow.errors import InvalidInput
from touchflow.models import utcnow

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass(frozen=True)
class Period:
    since: datetime | None
    until: datetime | None
    range: str = "custom"  # 24h, 7d, 30d, custom (the dashboard's choice), all (no filter)

    def page_query(self) -> dict[str, str]:
        """The period as the dashboard's query parameters (kept from page to page)."""
        if self.range in RANGES:
            return {"range": self.range}
        return {"range": "custom", **self.query()} if self.range == "custom" else {}

    def query(self) -> dict[str, str]:
        """The period as query parameters of the JSON API."""
        found = {"since": self.since, "until": self.until}
        return {k: v.isoformat().replace("+00:00", "Z") for k, v in found.items() if v is not None}


def period(since: datetime | None, until: datetime | None, range: str | None = None) -> Period:
    """`range` (24h, 7d, 30d) ending now, or the custom `since`/`until`; 422 for what cannot be a period."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name}: give a time zone, e.g. 2026-11-01T00:00:00Z")
    if range is not None and range != "custom":
        if range not in RANGES:
            raise InvalidInput(f"range: one of {', '.join(RANGES)} or custom (with since and until)")
        now = utcnow()
        return Period(now - RANGES[range], None, range)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until")
    return Period(since, until, "custom" if since or until else "all")


Since = Annotated[datetime | None, Query(description="Count from this time on (with a time zone).")]
Until = Annotated[datetime | None, Query(description="Count up to this time, not included.")]


def api_period(since: Since = None, until: Until = None) -> Period:
    return period(since, until)


PeriodDep = Annotated[Period, Depends(api_period)]
