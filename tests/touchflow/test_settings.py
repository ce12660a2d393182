"""Settings: durations in the short form and ISO 8601, journey timings and parameters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from touchflow.settings import JOURNEY_PARAMS, JOURNEY_TIMINGS, Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("PT1H", timedelta(hours=1)),
        ("P2D", timedelta(days=2)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_durations(make_settings: Callable[..., Settings], text: str, expected: timedelta) -> None:
    assert make_settings(cart_reminder_delay=text).cart_reminder_delay == expected


@pytest.mark.parametrize("text", ["soon", "1 hour", "h1", ""])
def test_bad_durations_name_the_setting(make_settings: Callable[..., Settings], text: str) -> None:
    with pytest.raises(ValidationError, match="cart_reminder_delay"):
        make_settings(cart_reminder_delay=text)


def test_every_journey_setting_reaches_the_runs(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(cart_reminder_delay="30s", loyalty_tiers="silver:100, gold:500")
    assert set(settings.journey_timings()) == set(JOURNEY_TIMINGS)
    assert settings.journey_timings()["cart_reminder_delay"] == 30
    assert settings.journey_params()["loyalty_tiers"] == {"silver": 100, "gold": 500}
    assert set(settings.journey_params()) == set(JOURNEY_PARAMS)


def test_tiers_and_coupon_units_are_checked(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValidationError, match="loyalty_tiers"):
        make_settings(loyalty_tiers="gold")
    with pytest.raises(ValidationError, match="coupon_unit"):
        make_settings(coupon_unit="euros")
    assert make_settings(coupon_unit="usd").coupon_unit == "USD"


def test_timings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHFLOW_CART_REMINDER_DELAY", "15m")
    monkeypatch.setenv("TOUCHFLOW_LOYALTY_TIERS", "silver:10,gold:20")
    settings = Settings()
    assert settings.cart_reminder_delay == timedelta(minutes=15)
    assert settings.loyalty_tiers == {"silver": 10, "gold": 20}


def test_the_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        f"TOUCHFLOW_{name.upper()}"
        for name in Settings.model_fields
        if f"TOUCHFLOW_{name.upper()}" not in readme
    ]
    assert missing == []
