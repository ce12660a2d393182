"""docker-compose.yml is for users (no Docker engine runs here): parse it and check it hangs together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from touchflow.settings import Settings

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


def test_api_and_worker_share_one_configuration_of_known_settings() -> None:
    services = compose()["services"]
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    assert {key: api[key] for key in worker} == worker
    known = {f"TOUCHFLOW_{name.upper()}" for name in Settings.model_fields}
    assert set(api) | set(worker) <= known
    assert "@postgresql:5432/" in worker["TOUCHFLOW_DATABASE_URL"]
    assert worker["TOUCHFLOW_SMTP_HOST"] == "mailpit"
    Settings.model_validate({key.removeprefix("TOUCHFLOW_").lower(): value for key, value in api.items()})


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
