"""The `touchflow` command line: the journeys registry, VAPID keys."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest

from touchflow.apikeys import Scope, new_key
from touchflow.cli import _run_worker, main
from touchflow.settings import Settings
from touchflow.vapid import load_private_key, public_key
from touchflow.workflows.registry import BUILTIN_JOURNEYS

BUILTINS = {name: cls.spec for name, cls in BUILTIN_JOURNEYS.items()}


def test_journeys_text_names_everything_a_marketer_asks(capsys: pytest.CaptureFixture[str]) -> None:
    main(["journeys"])
    out = capsys.readouterr().out
    for spec in BUILTINS.values():
        assert f"{spec.name}: {spec.description}" in out
        for step in spec.steps:
            assert step.name in out
    assert "triggers   cart_updated   (re-entry: once per cart_id)" in out
    assert "exits      cart_cleared" in out
    assert "cart_reminder_1          consideration  web_push → email   [A/B cart_reminder_copy: a/b]" in out
    assert "order_confirmation       purchase       email   [transactional]" in out


def test_journeys_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["journeys", "--json"])
    rows = {row["journey"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(BUILTINS)
    cart = rows["abandoned_cart"]
    assert (cart["starts_on"], cart["goals"], cart["exits_on"]) == (
        ["cart_updated"],
        ["order_placed"],
        ["cart_cleared"],
    )
    assert cart["steps"][0] == {
        "step": "cart_reminder_1",
        "stage": "consideration",
        "channels": ["web_push", "email"],
        "transactional": False,
        "experiment": "cart_reminder_copy",
        "variants": ["a", "b"],
    }
    assert rows["loyalty"]["starts_on"] == ["order_placed", "loyalty_points_changed"]


def test_vapid_keys_prints_env_lines_that_configure_web_push(capsys: pytest.CaptureFixture[str]) -> None:
    main(["vapid-keys", "--subject", "mailto:ops@shop.example"])
    lines = capsys.readouterr().out.splitlines()
    env = dict(line.split("=", 1) for line in lines if line.startswith("TOUCHFLOW_"))
    assert set(env) == {"TOUCHFLOW_VAPID_PRIVATE_KEY", "TOUCHFLOW_VAPID_SUBJECT"}
    [printed_public] = [line.split(": ", 1)[1] for line in lines if line.startswith("# public key: ")]

    settings = Settings.model_validate(
        {
            "vapid_private_key": env["TOUCHFLOW_VAPID_PRIVATE_KEY"],
            "vapid_subject": env["TOUCHFLOW_VAPID_SUBJECT"],
        }
    )
    assert settings.vapid_subject == "mailto:ops@shop.example"
    assert public_key(load_private_key(settings.vapid_private_key.get_secret_value())) == printed_public


def test_vapid_keys_refuses_a_subject_push_services_would_refuse() -> None:
    with pytest.raises(SystemExit, match="--subject must be a mailto: or https: URL"):
        main(["vapid-keys", "--subject", "ops@shop.example"])


def test_journeys_shows_each_setting_in_force_and_where_it_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHFLOW_CART_REMINDER_DELAY", "20s")
    monkeypatch.setattr("touchflow.cli.get_settings", Settings)  # read the environment as it is now
    main(["journeys"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["TOUCHFLOW_CART_REMINDER_DELAY", "20s", "TOUCHFLOW_CART_REMINDER_DELAY"] in rows
    assert ["TOUCHFLOW_CART_GOAL_WINDOW", "3d", "default"] in rows
    main(["journeys", "--json"])
    [cart] = [row for row in json.loads(capsys.readouterr().out) if row["journey"] == "abandoned_cart"]
    assert cart["settings"][0] == {
        "name": "cart_reminder_delay",
        "variable": "TOUCHFLOW_CART_REMINDER_DELAY",
        "kind": "timing",
        "value": "20s",
        "default": "1h",
        "source": "TOUCHFLOW_CART_REMINDER_DELAY",
        "help": "Abandoned cart: quiet time after the cart's last change.",
    }


STRONG = secrets.token_urlsafe(32)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the environment as it is now; starting the API or the worker fails the test."""
    for name in ("TOUCHFLOW_SECRET_KEY", "TOUCHFLOW_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("touchflow.cli.get_settings", Settings)

    def start(*args: object, **kwargs: object) -> None:
        raise AssertionError("started")

    monkeypatch.setattr("touchflow.cli._serve", start)
    monkeypatch.setattr("touchflow.temporal.connect", start)


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param({"TOUCHFLOW_API_KEYS": STRONG}, "TOUCHFLOW_SECRET_KEY is not set", id="no secret"),
        pytest.param(
            {"TOUCHFLOW_SECRET_KEY": "change-me-to-a-long-random-string", "TOUCHFLOW_API_KEYS": STRONG},
            "TOUCHFLOW_SECRET_KEY is a placeholder",
            id="placeholder secret",
        ),
        pytest.param(
            {"TOUCHFLOW_SECRET_KEY": STRONG, "TOUCHFLOW_API_KEYS": f"{STRONG},test-key-1"},
            "TOUCHFLOW_API_KEYS: key 2",
            id="short key",
        ),
    ],
)
def test_api_and_worker_refuse_to_start_on_weak_secrets(
    started: None, monkeypatch: pytest.MonkeyPatch, command: str, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main([command])
    message = str(exited.value.code)
    assert message.startswith("touchflow: not starting:") and problem in message


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_start_with_strong_secrets(
    started: None, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("TOUCHFLOW_SECRET_KEY", STRONG)
    monkeypatch.setenv("TOUCHFLOW_API_KEYS", new_key([Scope.INGEST])[1])
    with pytest.raises(AssertionError, match="started"):
        main([command])


def test_the_worker_dev_starts_takes_the_secrets_dev_made(started: None) -> None:
    # `touchflow dev` runs `worker --no-check` with secrets of its own making (an older dev key is short).
    settings = Settings.model_validate({"secret_key": STRONG, "api_keys": ["dev_short"]})
    with pytest.raises(AssertionError, match="started"):
        asyncio.run(_run_worker(settings, check=False))
