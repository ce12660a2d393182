"""What segments cost and how fast they answer.

    .venv/bin/python -m bench.segments ingest [--events 100000] [--batch 1000] [--concurrency 4]
    .venv/bin/python -m bench.segments size [--profiles 100000] [--postgres URL]
    .venv/bin/python -m bench.segments store [--batches 20]

`ingest`: events accepted per second by POST /v1/events/batch (SQLite, as bench.ingest) with ten segments
defined over the API whose conditions the events move, against the same run with none (the built-in lifecycle
stages are kept in both). `size`: GET /v1/segments/{name} over that many profiles on PostgreSQL, and how long
creating the segment (filling it in one query) took. `store`: milliseconds per `store.events.ingest` of 1,000
events of known customers, in process (no HTTP), with none and with the ten segments, twice each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.common import machine
from bench.ingest import BENCH_KEY, api_env, blast, make_batches
from touchflow.temporal import free_port, wait_for_port

TEN: list[dict[str, Any]] = [
    {"event": "page_viewed", "count": {"gte": 3}, "within": "7d"},
    {"event": "cart_updated", "within": "1d"},
    {"event": "page_viewed", "where": [{"property": "url", "op": "contains", "value": "/p/1"}]},
    {"any": [{"event": "cart_updated", "count": {"gte": 2}}, {"event": "page_viewed", "count": {"gte": 10}}]},
    {"all": [{"event": "cart_updated"}, {"not": {"event": "order_placed"}}]},
    {"all": [{"event": "page_viewed", "within": "30d"}, {"reachable": "onsite"}]},
    {"all": [{"lifecycle": "engaged"}, {"event": "cart_updated", "count": {"gte": 3}}]},
    {"event": "page_viewed", "count": {"eq": 0}, "within": "1d"},
    {"all": [{"attribute": "city", "op": "eq", "value": "Hà Nội"}, {"event": "page_viewed"}]},
    {"event": "*", "count": {"gte": 20}, "within": "30d"},
]


async def ingest(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="touchflow-bench-segments-"))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}
    results: dict[str, float] = {}
    for name, segments in (("none", 0), ("ten", 10), ("none_again", 0), ("ten_again", 10)):
        port = free_port()
        env = dict(os.environ) | api_env(work / name, port, args.events)
        process = subprocess.Popen(
            [sys.executable, "-m", "touchflow.cli", "api"], env=env, stdout=subprocess.DEVNULL
        )
        try:
            await wait_for_port("127.0.0.1", port, 60)
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(headers=headers, timeout=60) as client:
                for i, condition in enumerate(TEN[:segments]):
                    made = await client.post(
                        f"{base}/v1/segments", json={"name": f"s{i}", "condition": condition}
                    )
                    made.raise_for_status()
            url = f"{base}/v1/events/batch"
            await blast([url], make_batches(args.batch, args.batch, f"{name}-warm"), 1, headers)
            batches = make_batches(args.events, args.batch, name)
            seconds = await blast([url], batches, args.concurrency, headers)
            results[name] = args.events / seconds
        finally:
            process.terminate()
            process.wait(30)
    none = (results["none"] + results["none_again"]) / 2
    ten = (results["ten"] + results["ten_again"]) / 2
    return {
        "machine": machine(),
        "events": args.events,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "events_per_s": {name: round(value) for name, value in results.items()},
        "ten_to_none": round(ten / none, 3),
    }


def size(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from touchflow.api.main import create_app
    from touchflow.db import make_engine, migrate
    from touchflow.settings import Settings

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(args.postgres)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{args.postgres}?options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(url)
        migrate(engine)
        cities = ["Hà Nội", "Huế", "Đà Nẵng", "Hồ Chí Minh"]
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customers (id, attributes, consents, created_at, updated_at) "
                    "SELECT 'c' || lpad(i::text, 7, '0'), jsonb_build_object('city', ((:cities)::text[])"
                    "[1 + i % 4], 'age', i % 70), '{}'::jsonb, now(), now() FROM generate_series(1, :n) i"
                ),
                {"n": args.profiles, "cities": cities},
            )
            conn.execute(
                text(
                    "INSERT INTO events (id, customer_id, name, properties, occurred_at, received_at) "
                    "SELECT 'e' || i, 'c' || lpad((1 + i % :n)::text, 7, '0'), 'order_placed', "
                    "jsonb_build_object('total', i % 1000000), now() - (i % 200) * interval '1 day', now() "
                    "FROM generate_series(1, :n) i"
                ),
                {"n": args.profiles},
            )
            conn.execute(text("ANALYZE"))
        engine.dispose()
        settings = Settings.model_validate(
            {"database_url": url, "api_keys": [BENCH_KEY], "secret_key": secrets.token_urlsafe(32)}
        )
        condition = {
            "all": [
                {"attribute": "city", "op": "eq", "value": "Hà Nội"},
                {"event": "order_placed", "count": {"gte": 1}, "within": "90d"},
            ]
        }
        with TestClient(
            create_app(settings, run_relay=False), headers={"Authorization": f"Bearer {BENCH_KEY}"}
        ) as api:
            started = time.perf_counter()
            made = api.post("/v1/segments", json={"name": "hanoi_recent", "condition": condition})
            create_ms = (time.perf_counter() - started) * 1000
            made.raise_for_status()
            timings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                answer = api.get("/v1/segments/hanoi_recent")
                timings.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            page = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                api.get("/v1/segments/hanoi_recent/members", params={"limit": 1000}).raise_for_status()
                page.append((time.perf_counter() - started) * 1000)
        return {
            "machine": machine(),
            "profiles": args.profiles,
            "size": answer.json()["size"],
            "create_and_fill_ms": round(create_ms),
            "get_ms_median": round(statistics.median(timings), 1),
            "get_ms_max": round(max(timings), 1),
            "members_page_1000_ms_median": round(statistics.median(page), 1),
        }
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def store(args: argparse.Namespace) -> dict[str, Any]:
    from touchflow.db import make_engine, migrate
    from touchflow.models import EventIn
    from touchflow.storage import Store

    def batch(tag: str, b: int) -> list[EventIn]:
        return [
            EventIn(
                id=f"{tag}-{b}-{i}",
                customer_id=f"cust-{(b * 1000 + i) % 5000}",
                name="page_viewed" if i % 10 else "cart_updated",
                properties={"url": f"https://shop.example/p/{i % 300}"},
            )
            for i in range(1000)
        ]

    results: dict[str, int] = {}
    for run, segments in (("none", 0), ("ten", 10), ("none_again", 0), ("ten_again", 10)):
        engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        migrate(engine)
        kept = Store(engine)
        for i, condition in enumerate(TEN[:segments]):
            kept.segments.create(f"s{i}", "", condition)
        for b in range(10):  # every customer known, with some history
            kept.events.ingest(batch("warm", b), ())
        started = time.perf_counter()
        for b in range(args.batches):
            kept.events.ingest(batch(run, b), ())
        results[run] = round((time.perf_counter() - started) / args.batches * 1000)
        engine.dispose()
    return {"machine": machine(), "ms_per_batch_of_1000": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("ingest")
    run.add_argument("--events", type=int, default=100_000)
    run.add_argument("--batch", type=int, default=1000)
    run.add_argument("--concurrency", type=int, default=4)
    sized = commands.add_parser("size")
    sized.add_argument("--profiles", type=int, default=100_000)
    sized.add_argument("--repeat", type=int, default=20)
    sized.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    kept = commands.add_parser("store")
    kept.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    if args.command == "ingest":
        result = asyncio.run(ingest(args))
    else:
        result = size(args) if args.command == "size" else store(args)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
