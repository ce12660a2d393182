"""The customer-protection rules `deliver_step` applies before anything goes out.

Pure functions over a profile and the settings, so every rule is tested on its own:

- consent: may this customer get this topic (marketing, transactional) on this channel?
- quiet hours: when may a marketing message go out in the customer's own time zone?
- frequency caps: how many marketing messages per rolling window, overall and per channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from touchflow.settings import parse_duration

MARKETING = "marketing"
TRANSACTIONAL = "transactional"
# Channels a customer reads when they choose to: they never wake anyone up.
PASSIVE_CHANNELS = frozenset({"onsite"})


def consent_refusal(
    consents: dict[str, Any], channel: str, topic: str, default_marketing: bool
) -> str | None:
    """Why this send is not allowed, or None when it is.

    Keys of a profile's `consents`, most specific first: `<channel>.<topic>` (`email.marketing`),
    `<channel>` (`web_push`), `<topic>` (`marketing`); and `all`, the global opt-out nothing bypasses.
    A transactional message (an order confirmation) bypasses marketing opt-outs, not an explicit
    `<channel>.transactional: false` and not `all: false`.
    """
    if consents.get("all") is False:
        return "customer opted out of all messages"
    for key in (f"{channel}.{topic}", channel, topic):
        if key in consents:
            if topic == TRANSACTIONAL and key != f"{channel}.{topic}":
                continue
            return None if consents[key] else f"no consent: {key} is false"
    if topic == MARKETING and not default_marketing:
        return "no marketing consent given (TOUCHFLOW_MARKETING_CONSENT_DEFAULT is false)"
    return None


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """`21:00-08:00` (may wrap midnight); empty or `off` means none."""
        if not text or text.strip().lower() == "off":
            return None
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not match:
            raise ValueError("TOUCHFLOW_QUIET_HOURS is written HH:MM-HH:MM, e.g. 21:00-08:00, or off")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return cls(time(h1, m1), time(h2, m2))

    def next_allowed(self, now: datetime, timezone: str | None, default_timezone: str) -> datetime | None:
        """None when `now` is outside quiet hours; otherwise when they end (aware, in UTC's terms)."""
        zone = _zone(timezone) or _zone(default_timezone) or ZoneInfo("UTC")
        local = now.astimezone(zone)
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            quiet = self.start <= clock < self.end
        else:
            quiet = clock >= self.start or clock < self.end
        if not quiet:
            return None
        end = datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=zone)
        return end


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class FrequencyCap:
    limit: int
    window: timedelta
    channel: str | None = None  # None: every channel together

    def describe(self) -> str:
        where = f" on {self.channel}" if self.channel else ""
        return f"{self.limit} marketing message(s){where} per {self.window}"


def parse_caps(text: str) -> list[FrequencyCap]:
    """`3/1d, email=2/1d, web_push=4/12h`: overall and per-channel limits; empty means none."""
    caps = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        channel, _, rule = part.rpartition("=")
        limit_text, _, window_text = rule.partition("/")
        window = parse_duration(window_text)
        if not limit_text.strip().isdigit() or not isinstance(window, timedelta) or window <= timedelta(0):
            raise ValueError(
                f"TOUCHFLOW_FREQUENCY_CAPS: {part!r} is not N/duration or channel=N/duration (e.g. 3/1d)"
            )
        caps.append(FrequencyCap(int(limit_text), window, channel.strip() or None))
    return caps
