"""The `touchflow` command line."""

from __future__ import annotations

import pytest

from touchflow.cli import main
from touchflow.settings import Settings
from touchflow.vapid import load_private_key, public_key


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
