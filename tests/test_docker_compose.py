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


def secrets_environ() -> dict[str, str]:
    """What a person exports before `docker compose up` (the file's header says how to make each)."""
    return {
        "TOUCHFLOW_API_KEYS": new_key([])[0],
        "TOUCHFLOW_SECRET_KEY": secrets.token_urlsafe(32),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
    }


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
    environ = secrets_environ()
    settings = Settings.model_validate(
        {key.removeprefix("TOUCHFLOW_").lower(): interpolate(value, environ) for key, value in api.items()}
    )
    check_production_secrets(settings, api=True)


def test_secrets_come_from_the_environment_and_none_ships_in_the_file() -> None:
    env = compose()["services"]["api"]["environment"]
    for name in ("TOUCHFLOW_API_KEYS", "TOUCHFLOW_SECRET_KEY"):
        # `${NAME:?message}`: compose refuses to start while the variable is unset, and says what to do.
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]*{name}[^}}]*\}}", env[name]), env[name]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    # Every variable the file reads is required, with a message: no default a stack could start on.
    used = re.findall(r"\$\{([^}]*)\}", text)
    assert used and all(re.fullmatch(r"\w+:\?.+", each) for each in used), used
    # The database password too: the one the stack's PostgreSQL is made with, and the one both sides use.
    services = compose()["services"]
    password = "${POSTGRES_PASSWORD:?"
    assert services["postgresql"]["environment"]["POSTGRES_PASSWORD"].startswith(password)
    assert services["temporal"]["environment"]["POSTGRES_PWD"].startswith(password)
    assert f":{password}" in env["TOUCHFLOW_DATABASE_URL"]


def test_only_the_api_listens_beyond_this_machine() -> None:
    services = compose()["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published.pop("api") == ["8000:8000"]
    assert published["temporal"] and published["temporal-ui"]
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_processes_wait_for_their_database_and_temporal_to_be_healthy() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgresql"]["condition"] == "service_healthy"
        assert depends["temporal"]["condition"] == "service_healthy"
    # Workers wait for the API, which migrates the schema at start (a worker's /readyz wants it current).
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_every_service_others_wait_for_has_a_health_check_and_touchflows_ask_readyz() -> None:
    services = compose()["services"]
    waited_for = {
        dependency
        for service in services.values()
        for dependency, rule in (service.get("depends_on") or {}).items()
        if rule.get("condition") == "service_healthy"
    }
    assert {"postgresql", "temporal", "api"} <= waited_for
    for name in waited_for | {"worker"}:
        assert services[name]["healthcheck"]["test"], name
    env = services["worker"]["environment"]
    probe = f"http://127.0.0.1:{env['TOUCHFLOW_WORKER_METRICS_PORT']}/readyz"
    assert probe in " ".join(services["worker"]["healthcheck"]["test"])
    api_port = services["api"]["environment"]["TOUCHFLOW_API_PORT"]
    assert f"http://127.0.0.1:{api_port}/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    # The probe port must listen beyond the container's loopback for Prometheus to reach it.
    assert env["TOUCHFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"


def test_workers_scale_no_fixed_name_no_host_port() -> None:
    """`docker compose up --scale worker=3`: a fixed container name or host port would allow one."""
    services = compose()["services"]
    assert not any("container_name" in service for service in services.values())
    assert "ports" not in services["worker"]


def test_a_stopping_worker_has_time_to_finish_the_sends_in_flight() -> None:
    """SIGTERM lets a worker's deliveries finish (docs/operations.md): the grace before SIGKILL outlasts a
    step that waits out the timeout of every channel it falls back through."""
    grace = re.fullmatch(r"(\d+)s", compose()["services"]["worker"]["stop_grace_period"])
    assert grace is not None
    settings = Settings()
    longest_step = settings.push_timeout + settings.zalo_timeout + settings.smtp_timeout
    assert int(grace.group(1)) > longest_step.total_seconds()


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    discovered = {
        job["job_name"]: [(tuple(sd["names"]), sd["type"], sd["port"]) for sd in job["dns_sd_configs"]]
        for job in config["scrape_configs"]
    }
    api_port = int(services["api"]["environment"]["TOUCHFLOW_API_PORT"])
    worker_port = int(services["worker"]["environment"]["TOUCHFLOW_WORKER_METRICS_PORT"])
    # By DNS, one address per container: every scaled worker is scraped, not one of them.
    assert discovered == {
        "touchflow-api": [(("api",), "A", api_port)],
        "touchflow-worker": [(("worker",), "A", worker_port)],
    }


def test_the_image_installs_every_package_the_wheel_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = pyproject.split("packages = [", 1)[1].split("]", 1)[0]
    for package in (p.strip().strip('"') for p in packages.split(",") if p.strip()):
        assert f"COPY {package} {package}" in dockerfile
