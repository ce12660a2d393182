"""/healthz (alive) and /readyz (database, schema, Temporal), each check saying what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from touchflow.api.main import create_app
from touchflow.db import make_engine, migrate
from touchflow.settings import Settings
from touchflow.temporal import free_port


def test_ready_when_the_database_the_schema_and_temporal_answer(
    db_url: str, make_settings: Callable[..., Settings], time_skipping_env: WorkflowEnvironment
) -> None:
    address = time_skipping_env.client.service_client.config.target_host
    app = create_app(make_settings(database_url=db_url, temporal_address=address), run_relay=False)
    with TestClient(app) as api:
        response = api.get("/readyz")  # no key: a load balancer's probe has none
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "database": "ok", "migrations": "ok", "temporal": "ok"}


def test_not_ready_names_temporal_unreachable_and_a_schema_behind(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0014'"))
    engine.dispose()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(database_url=url, temporal_address=address, auto_migrate=False)
    with TestClient(create_app(settings, run_relay=False)) as api:
        response = api.get("/readyz")
        alive = api.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["database"] == "ok"
    assert "revision 0014" in body["migrations"] and "touchflow migrate" in body["migrations"]
    assert address in body["temporal"] and "TOUCHFLOW_TEMPORAL_ADDRESS" in body["temporal"]
    assert alive.status_code == 200  # alive all the same: restarting it would mend neither
