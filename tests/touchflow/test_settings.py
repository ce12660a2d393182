"""Settings: durations in the short form and ISO 8601; the README lists every one.

Journey timings and parameters are the journeys' own: tests/workflows/test_registry.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from touchflow.settings import Settings


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
    assert make_settings(smtp_timeout=text).smtp_timeout == expected


@pytest.mark.parametrize("text", ["soon", "1 hour", "h1", ""])
def test_bad_durations_name_the_setting(make_settings: Callable[..., Settings], text: str) -> None:
    with pytest.raises(ValidationError, match="smtp_timeout"):
        make_settings(smtp_timeout=text)


def test_the_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [
        f"TOUCHFLOW_{name.upper()}"
        for name in Settings.model_fields
        if f"TOUCHFLOW_{name.upper()}" not in readme
    ]
    assert missing == []


@pytest.mark.parametrize("field", ["push_service_hosts", "link_domains"])
def test_a_bad_host_list_names_the_setting(make_settings: Callable[..., Settings], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        make_settings(**{field: "push.shop.example, https://evil.example/path"})


def test_host_lists_are_parsed_at_load_and_survive_a_round_trip(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(push_service_hosts="http://127.0.0.1, *.push.shop.example")
    again = Settings.model_validate(settings.model_dump())
    assert str(again.push_service_hosts) == "http://127.0.0.1, *.push.shop.example"
    assert again.push_service_hosts.find("a.push.shop.example") is not None
