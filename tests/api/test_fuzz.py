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
from touchflow.db import make_engine, migrate
from touchflow.settings import Settings


@pytest.fixture
def api_schema(
    make_settings: Callable[..., Settings], tmp_path: Any, time_skipping_env: WorkflowEnvironment
) -> Any:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    migrate(make_engine(url))
    app = create_app(
        make_settings(
            database_url=url,
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
            response = case.call(headers={"Authorization": f"Bearer {API_KEY}"})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")

        check()
    assert failures == []
