"""The journey map over a million delivery rows on PostgreSQL: how long `GET /dashboard/journeys/{name}` takes
to answer, rendered, with the funnel, engagement, reasons, attribution and A/B verdicts it shows.

    .venv/bin/python -m bench.insight --deliveries 1000000 [--refresh]

Seeds a schema of its own in the database (dropped after) with generate_series, all in SQL: the built-in
`abandoned_cart` journey, 60 % of the rows its first step (A/B split), 40 % its second; a run entry per
customer, an open for 30 % of the messages and a click for 10 %, a few failures and skips, and an order
with a total after 3 % of first messages; then VACUUM ANALYZE. Each request goes through the app in process
(TestClient), the period the dashboard's default (30 days); prints the figures as JSON. With `--refresh`,
the worker's insight refresh (the `refresh_insight` activity) runs once after seeding, timed, as the
`touchflow-insight-refresh` schedule would have: "first" is then the first view after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from bench.common import machine
from touchflow.activities.insight import InsightActivities
from touchflow.activities.types import RefreshInsightInput
from touchflow.api.main import create_app
from touchflow.db import make_engine, migrate
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.testing import registry_of
from touchflow.workflows.registry import Registry

JOURNEY = "abandoned_cart"
KEY = "bench-insight-key-0123456789"

SEED = """
INSERT INTO journey_entries (run_id, workflow_id, journey, customer_id, entry_key, status, entered_at)
SELECT 'run-' || n, 'abandoned_cart:c' || n || ':k', 'abandoned_cart', 'c' || n, 'k',
       CASE WHEN mod(n, 33) = 0 THEN 'converted' WHEN mod(n, 7) = 0 THEN 'exited' ELSE 'active' END,
       now() - interval '20 days' + mod(n, 1641600) * interval '1 second'
FROM generate_series(1, {customers}) AS n;

INSERT INTO deliveries (key, journey, step, customer_id, workflow_id, stage, variant, channel, locale,
                        locale_fallback, marketing, status, send_token, error, attempts, created_at, sent_at,
                        delivered_at, updated_at)
SELECT 'abandoned_cart:c' || n || ':k:' || s, 'abandoned_cart', 'cart_reminder_' || s, 'c' || n,
       'abandoned_cart:c' || n || ':k', 'consideration',
       CASE WHEN s = 1 THEN (CASE WHEN mod(n, 2) = 0 THEN 'a' ELSE 'b' END) END,
       CASE WHEN mod(n, 50) = 0 THEN NULL WHEN mod(n, 3) = 0 THEN 'email' ELSE 'web_push' END,
       'en', false, true,
       CASE WHEN mod(n, 50) = 0 THEN 'skipped' WHEN mod(n, 97) = 0 THEN 'failed'
            WHEN mod(n, 5) = 0 THEN 'delivered' ELSE 'sent' END,
       1,
       CASE WHEN mod(n, 50) = 0 THEN 'no consent for marketing'
            WHEN mod(n, 97) = 0 THEN 'email: 550 mailbox unavailable' END,
       '[]',
       t, CASE WHEN mod(n, 50) <> 0 AND mod(n, 97) <> 0 THEN t END, CASE WHEN mod(n, 5) = 0 THEN t END, t
FROM generate_series(1, {customers}) AS n
CROSS JOIN LATERAL (SELECT s, now() - interval '20 days' + mod(n, 1641600) * interval '1 second'
                               + (s - 1) * interval '1 day' AS t
                    FROM generate_series(1, 2) AS s) AS steps
WHERE s = 1 OR n <= {second};

INSERT INTO engagements (delivery_id, kind, at)
SELECT id, 'open', created_at + interval '1 hour' FROM deliveries WHERE mod(id, 10) < 3;
INSERT INTO engagements (delivery_id, kind, url, at)
SELECT id, 'click', 'https://shop.example/cart', created_at + interval '2 hours'
FROM deliveries WHERE mod(id, 10) = 0;

INSERT INTO events (id, customer_id, name, properties, occurred_at, received_at)
SELECT 'order-' || n, 'c' || n, 'order_placed',
       json_build_object('order_id', 'o' || n, 'total', mod(n, 200) + 10)::jsonb,
       now() - interval '20 days' + mod(n, 1641600) * interval '1 second' + interval '3 hours',
       now() - interval '20 days' + mod(n, 1641600) * interval '1 second' + interval '3 hours 1 second'
FROM generate_series(1, {customers}) AS n WHERE mod(n, 33) = 0;
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--refresh", action="store_true", help="run the insight refresh once after seeding")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    customers = round(args.deliveries * 0.6)
    second = args.deliveries - customers
    schema = f"bench_{secrets.token_hex(5)}"
    admin = make_engine(args.postgres)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{args.postgres}?options=-csearch_path%3D{schema}"
    result: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).date().isoformat(),
        "deliveries": args.deliveries,
        "refresh_first": args.refresh,
    }
    try:
        engine = make_engine(url)
        migrate(engine)
        start = time.perf_counter()
        with engine.begin() as conn:
            for statement in SEED.split(";\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement.format(customers=customers, second=second))
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
            counts = {
                name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar()
                for name in ("deliveries", "engagements", "journey_entries", "events")
            }
            result["server"] = conn.execute(text("SHOW server_version")).scalar()
        engine.dispose()
        result["rows"] = counts
        result["seed_s"] = round(time.perf_counter() - start, 1)
        settings = Settings(database_url=url, api_keys=[f"read:{KEY}"], secret_key="bench-secret")
        registry = registry_of(builtins=True)
        if args.refresh:
            result["refresh"] = _refresh(url, registry, settings)
        app = create_app(settings, registry, run_relay=False)
        with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
            for path, name in (
                (f"/dashboard/journeys/{JOURNEY}?range=30d", "journey_map"),
                (f"/v1/journeys/{JOURNEY}/funnel", "funnel_json"),
            ):
                took = []
                for _ in range(args.runs + 1):
                    begin = time.perf_counter()
                    answer = client.get(path)
                    took.append((time.perf_counter() - begin) * 1000)
                    assert answer.status_code == 200, answer.text[:500]
                first, rest = took[0], sorted(took[1:])
                result[name] = {
                    "first_ms": round(first, 1),
                    "median_ms": round(statistics.median(rest), 1),
                    "p90_ms": round(rest[int(len(rest) * 0.9) - 1], 1),
                    "max_ms": round(rest[-1], 1),
                }
            funnel = client.get(f"/v1/journeys/{JOURNEY}/funnel").json()
            result["funnel"] = {
                "entered": funnel["entered"],
                "sent": [s["sent"] for s in funnel["steps"]],
                "attributed_conversions": funnel["attributed_conversions"],
                "revenue": funnel["revenue"],
            }
        print(json.dumps(result, indent=2))
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _refresh(url: str, registry: Registry, settings: Settings) -> dict[str, Any]:
    """The `refresh_insight` activity once, as the schedule runs it (outside Temporal), timed."""
    engine = make_engine(url)
    try:
        activities = InsightActivities(Store(engine), registry, settings.attribution_window)
        start = time.perf_counter()
        done = asyncio.run(ActivityEnvironment().run(activities.refresh_insight, RefreshInsightInput()))
        return {"s": round(time.perf_counter() - start, 1), "journeys": done.journeys, "hours": done.hours}
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
