"""docker-compose.yml is for users (no Docker engine runs here): parse it and check it hangs together."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from touchflow.apikeys import new_key
from touchflow.settings import Settings, check_production_secrets

ROOT = Path(__file__).parents[1]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_the_stack_has_every_part_of_the_production_shape() -> None:
    services = compose()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "api", "worker", "mailpit"} <= set(services)
    assert services["api"]["command"] == ["touchflow", "api"]
    assert services["worker"]["command"] == ["touchflow", "worker"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def interpolate(value: str, environ: dict[str, str]) -> str:
    """What compose makes of `${NAME:?message}`: the variable's value (compose stops when it is unset)."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: environ[m.group(1)], value)


def test_api_and_worker_share_one_configuration_of_known_settings() -> None:
    services = compose()["services"]
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    assert {key: api[key] for key in worker} == worker
    known = {f"TOUCHFLOW_{name.upper()}" for name in Settings.model_fields}
    assert set(api) | set(worker) <= known
    assert "@postgresql:5432/" in worker["TOUCHFLOW_DATABASE_URL"]
    assert worker["TOUCHFLOW_SMTP_HOST"] == "mailpit"
    environ = {"TOUCHFLOW_API_KEYS": new_key([])[0], "TOUCHFLOW_SECRET_KEY": secrets.token_urlsafe(32)}
    settings = Settings.model_validate(
        {key.removeprefix("TOUCHFLOW_").lower(): interpolate(value, environ) for key, value in api.items()}
    )
    check_production_secrets(settings, api=True)


def test_secrets_come_from_the_environment_and_none_ships_in_the_file() -> None:
    env = compose()["services"]["api"]["environment"]
    for name in ("TOUCHFLOW_API_KEYS", "TOUCHFLOW_SECRET_KEY"):
        # `${NAME:?message}`: compose refuses to start while the variable is unset, and says what to do.
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]*{name}[^}}]*\}}", env[name]), env[name]
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_only_the_api_listens_beyond_this_machine() -> None:
    services = compose()["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published.pop("api") == ["8000:8000"]
    assert published["temporal"] and published["temporal-ui"]
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_processes_wait_for_their_database_and_temporal() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgresql"]["condition"] == "service_healthy"
        assert "temporal" in depends
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_the_image_installs_every_package_the_wheel_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = pyproject.split("packages = [", 1)[1].split("]", 1)[0]
    for package in (p.strip().strip('"') for p in packages.split(",") if p.strip()):
        assert f"COPY {package} {package}" in dockerfile
