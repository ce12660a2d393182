"""Consent, quiet hours and frequency-cap rules, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from touchflow.activities.policy import FrequencyCap, QuietHours, consent_refusal, parse_caps


@pytest.mark.parametrize(
    ("consents", "channel", "topic", "default", "allowed"),
    [
        ({}, "email", "marketing", True, True),
        ({}, "email", "marketing", False, False),
        ({"marketing": True}, "email", "marketing", False, True),
        ({"marketing": False}, "email", "marketing", True, False),
        ({"marketing": False}, "email", "transactional", True, True),  # receipts bypass marketing opt-out
        ({"email": False}, "email", "marketing", True, False),
        ({"email": False}, "email", "transactional", True, True),
        ({"email": False}, "web_push", "marketing", True, True),
        ({"email.marketing": False, "marketing": True}, "email", "marketing", True, False),
        ({"email.marketing": True, "marketing": False}, "email", "marketing", True, True),
        ({"email.transactional": False}, "email", "transactional", True, False),
        ({"all": False, "email.transactional": True}, "email", "transactional", True, False),
        ({"all": False}, "onsite", "marketing", True, False),
    ],
)
def test_consent(consents: dict[str, Any], channel: str, topic: str, default: bool, allowed: bool) -> None:
    refusal = consent_refusal(consents, channel, topic, default)
    assert (refusal is None) == allowed, refusal


SAIGON = "Asia/Ho_Chi_Minh"  # UTC+7


@pytest.mark.parametrize(
    ("utc_now", "timezone", "until_local"),
    [
        (datetime(2026, 11, 25, 3, 0, tzinfo=UTC), SAIGON, None),  # 10:00 local
        (datetime(2026, 11, 25, 14, 30, tzinfo=UTC), SAIGON, datetime(2026, 11, 26, 8, 0)),  # 21:30
        (datetime(2026, 11, 25, 20, 0, tzinfo=UTC), SAIGON, datetime(2026, 11, 26, 8, 0)),  # 03:00
        (datetime(2026, 11, 25, 0, 59, tzinfo=UTC), SAIGON, datetime(2026, 11, 25, 8, 0)),  # 07:59
        (datetime(2026, 11, 25, 1, 0, tzinfo=UTC), SAIGON, None),  # 08:00 sharp
        (datetime(2026, 11, 25, 14, 30, tzinfo=UTC), "Europe/Berlin", None),  # 15:30 in Berlin
        (datetime(2026, 11, 25, 14, 30, tzinfo=UTC), "Not/AZone", datetime(2026, 11, 26, 8, 0)),  # default
    ],
)
def test_quiet_hours_in_the_customers_time_zone(
    utc_now: datetime, timezone: str, until_local: datetime | None
) -> None:
    quiet = QuietHours.parse("21:00-08:00")
    assert quiet is not None
    until = quiet.next_allowed(utc_now, timezone, SAIGON)
    if until_local is None:
        assert until is None
    else:
        assert until is not None and until.replace(tzinfo=None) == until_local
        assert until > utc_now


def test_quiet_hours_within_one_day_and_off() -> None:
    lunch = QuietHours.parse("12:00-13:30")
    assert lunch == QuietHours(time(12), time(13, 30))
    assert lunch.next_allowed(datetime(2026, 1, 1, 12, 15, tzinfo=UTC), "UTC", "UTC") == datetime(
        2026, 1, 1, 13, 30, tzinfo=UTC
    )
    assert QuietHours.parse("off") is None and QuietHours.parse("") is None
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        QuietHours.parse("late at night")


def test_frequency_caps_parse() -> None:
    assert parse_caps("3/1d, email=2/1d,web_push=4/12h") == [
        FrequencyCap(3, timedelta(days=1)),
        FrequencyCap(2, timedelta(days=1), "email"),
        FrequencyCap(4, timedelta(hours=12), "web_push"),
    ]
    assert parse_caps("") == []
    for bad in ("three/1d", "3/soon", "3", "email=2/0s"):
        with pytest.raises(ValueError, match="TOUCHFLOW_FREQUENCY_CAPS"):
            parse_caps(bad)
