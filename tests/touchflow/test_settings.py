"""Settings: durations in the short form and ISO 8601; the README lists every one.

Journey timings and parameters are the journeys' own: tests/workflows/test_registry.py."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from touchflow.apikeys import new_key
from touchflow.errors import ConfigurationError
from touchflow.settings import Settings, check_production_secrets
from touchflow.testing import TEST_API_KEY, TEST_SECRET


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


STRONG = secrets.token_urlsafe(32)
HASHED = new_key([])[1]  # a `sha256=<hex>` entry: taken as given


@pytest.mark.parametrize(
    ("secret_key", "api_keys", "problem"),
    [
        pytest.param("", [STRONG], "TOUCHFLOW_SECRET_KEY is not set", id="no secret"),
        pytest.param("k" * 20 + "abcdefgh", [STRONG], "TOUCHFLOW_SECRET_KEY is too short (28", id="short"),
        pytest.param("change-me-to-a-long-random-string", [STRONG], "placeholder", id="compose's old one"),
        pytest.param("CHANGEME", [STRONG], "TOUCHFLOW_SECRET_KEY is a placeholder", id="changeme"),
        pytest.param("secret", [STRONG], "TOUCHFLOW_SECRET_KEY is a placeholder", id="secret"),
        pytest.param("your-secret-key-goes-here-0123456789", [STRONG], "placeholder", id="your secret"),
        pytest.param("ab" * 20, [STRONG], "not random", id="repeated"),
        pytest.param(STRONG, ["change-me-api-key"], "TOUCHFLOW_API_KEYS: key 1 (id ", id="placeholder key"),
        pytest.param(STRONG, [HASHED, "ingest:short-key"], "key 2 (id ", id="short key with scopes"),
        pytest.param(STRONG, [], "TOUCHFLOW_API_KEYS is not set", id="no key for the API"),
    ],
)
def test_production_refuses_missing_short_or_placeholder_secrets(
    secret_key: str, api_keys: list[str], problem: str
) -> None:
    settings = Settings.model_validate({"secret_key": secret_key, "api_keys": api_keys})
    with pytest.raises(ConfigurationError) as refused:
        check_production_secrets(settings, api=True)
    message = str(refused.value)
    assert problem in message
    assert "secrets.token_urlsafe(32)" in message or "touchflow api-key" in message
    for value in (secret_key, *api_keys):
        assert len(value) < 8 or value not in message  # never quoted


@pytest.mark.parametrize(
    ("secret_key", "api_keys", "api"),
    [
        pytest.param(STRONG, [new_key([])[0]], True, id="made by touchflow api-key"),
        pytest.param(STRONG, [HASHED, f"read+ingest:{STRONG}"], True, id="hashed, and with scopes"),
        pytest.param(STRONG, [], False, id="a worker needs no API key"),
        pytest.param(
            TEST_SECRET, [TEST_API_KEY], True, id="the testing kit's, so tests run the real processes"
        ),
    ],
)
def test_production_starts_with_strong_secrets(secret_key: str, api_keys: list[str], api: bool) -> None:
    settings = Settings.model_validate({"secret_key": secret_key, "api_keys": api_keys})
    check_production_secrets(settings, api=api)
