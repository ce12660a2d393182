"""A fuzzing pass over the OpenAPI schema (schemathesis): whatever a client sends, no 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from temporalio.testing import WorkflowEnvironment

from tests.conftest import API_KEY
from touchflow.api.main import create_app
from touchflow.settings import Settings


@pytest.fixture
def api_schema(
    make_settings: Callable[..., Settings], db_url: str, time_skipping_env: WorkflowEnvironment
) -> Any:
    """The app on each database (SQLite and PostgreSQL: the two refuse different input)."""
    app = create_app(
        make_settings(
            database_url=db_url,
            rate_limit_per_minute=0,
            temporal_address=time_skipping_env.client.service_client.config.target_host,
        ),
        run_relay=False,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_makes_the_api_fail(api_schema: Any) -> None:
    """Every operation, with generated valid and invalid inputs, answers below 500."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            where = f"{case.method} {case.formatted_path}"
            try:
                response = case.call(headers={"Authorization": f"Bearer {API_KEY}"})
            except Exception as exc:  # the app raised: a 500 in production; note it, go on to the rest
                failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
                return
            if response.status_code >= 500:
                failures.append(f"{where}: {response.text[:200]}")

        check()
    assert not failures, "\n".join(failures)
