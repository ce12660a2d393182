"""Events accepted per second by POST /v1/events/batch on the embedded default (SQLite), against a bare
FastAPI endpoint that does one SQLite executemany per batch, measured in the same run; and the same events
sent as Segment messages to POST /v1/batch (the Tracking API), against /v1/events/batch.

    .venv/bin/python -m bench.ingest [--events 100000] [--batch 1000] [--concurrency 4] [--postgres URL]
                                     [--apis N]

With `--postgres URL` every server's store is on PostgreSQL instead, each in a schema of its own (created,
migrated, dropped after), and the bare endpoint does one psycopg `executemany` per batch into its schema.
With `--apis N` the touchflow and Segment figures are of N `touchflow api` processes on the one database (the
API keeps no state of its own: production runs as many as it needs behind a load balancer), the clients
spread over them in turn; the bare endpoint stays one process.

Both servers run under uvicorn in their own process on loopback; the client pre-encodes every batch so it
measures the server, not itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.common import load, machine
from touchflow.db import make_engine, migrate
from touchflow.temporal import free_port, wait_for_port

# `touchflow api` starts only with keys and a secret of production strength.
BENCH_KEY = "tfk_bench_" + secrets.token_urlsafe(24)

BARE_APP = """
import json, os, sqlite3
from fastapi import FastAPI, Request
db = sqlite3.connect(os.environ["BENCH_DB"], check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
db.execute(
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, customer_id TEXT, name TEXT, properties TEXT)"
)
app = FastAPI()
@app.post("/v1/events/batch")
async def batch(request: Request):
    events = (await request.json())["events"]
    rows = [(e["id"], e["customer_id"], e["name"], json.dumps(e.get("properties", {}))) for e in events]
    with db:
        db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
    return {"accepted": len(rows)}
"""

# The same on PostgreSQL: psycopg's executemany (pipelined), a connection per thread of the pool.
BARE_PG_APP = """
import asyncio, json, os, threading
import psycopg
from fastapi import FastAPI, Request
URL, SCHEMA = os.environ["BENCH_PG"], os.environ["BENCH_SCHEMA"]
local = threading.local()
def conn():
    if not hasattr(local, "conn"):
        local.conn = psycopg.connect(URL, options=f"-csearch_path={SCHEMA}", autocommit=True)
    return local.conn
conn().execute(
    "CREATE TABLE IF NOT EXISTS events"
    " (id TEXT PRIMARY KEY, customer_id TEXT, name TEXT, properties JSONB)"
)
def write(rows):
    c = conn()
    with c.transaction(), c.cursor() as cur:
        cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
app = FastAPI()
@app.post("/v1/events/batch")
async def batch(request: Request):
    events = (await request.json())["events"]
    rows = [(e["id"], e["customer_id"], e["name"], json.dumps(e.get("properties", {}))) for e in events]
    await asyncio.to_thread(write, rows)
    return {"accepted": len(rows)}
"""


def make_batches(total: int, size: int, tag: str) -> list[bytes]:
    batches = []
    for start in range(0, total, size):
        events = [
            {
                "id": f"{tag}-{i}",
                "customer_id": f"cust-{i % 5000}",
                "name": "page_viewed" if i % 10 else "cart_updated",
                "properties": {"url": f"https://shop.example/p/{i % 300}", "cart_id": f"cart-{i % 5000}"},
                "timestamp": "2026-11-25T10:00:00Z",
            }
            for i in range(start, min(start + size, total))
        ]
        batches.append(json.dumps({"events": events}).encode())
    return batches


def make_segment_batches(total: int, size: int, tag: str) -> list[bytes]:
    """The same events as `make_batches`, as analytics-python sends them (`context.library` and `sentAt`)."""
    batches = []
    for body in make_batches(total, size, tag):
        messages = [
            {
                "type": "track",
                "messageId": e["id"],
                "userId": e["customer_id"],
                "event": e["name"],
                "properties": e["properties"],
                "timestamp": e["timestamp"],
                "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
            }
            for e in json.loads(body)["events"]
        ]
        batches.append(json.dumps({"batch": messages, "sentAt": "2026-11-25T10:00:01Z"}).encode())
    return batches


async def blast(urls: list[str], batches: list[bytes], concurrency: int, headers: dict[str, str]) -> float:
    """Seconds to post every batch, `concurrency` at a time, client i posting to `urls[i % len(urls)]`."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in batches:
        queue.put_nowait(body)

    async def client_loop(client: httpx.AsyncClient, url: str) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, urls[i % len(urls)]) for i in range(concurrency)))
        return time.perf_counter() - started


def api_env(home: Path, port: int, events: int) -> dict[str, str]:
    """The environment of a benchmarked `touchflow api`."""
    return {
        "TOUCHFLOW_HOME": str(home),
        "TOUCHFLOW_API_KEYS": BENCH_KEY,
        "TOUCHFLOW_SECRET_KEY": secrets.token_urlsafe(32),
        # No Temporal here: the relay keeps routed events in the outbox, as when Temporal is away.
        "TOUCHFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "TOUCHFLOW_API_PORT": str(port),
        # The limit is on (each event counts) but set above what the run sends, so it never binds.
        "TOUCHFLOW_RATE_LIMIT_PER_MINUTE": str(100 * events),
        "TOUCHFLOW_TRACK_MAX_BATCH_BYTES": str(4 * 1024 * 1024),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="every store on PostgreSQL (a schema each, dropped after), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--apis", type=int, default=1, help="touchflow api processes sharing the database")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="touchflow-bench-"))
    results = {}
    prefix = f"bench_{secrets.token_hex(4)}"
    schemas: list[str] = []
    try:
        for name in ("bare", "touchflow", "segment"):
            results[name] = await measure(name, args, work, f"{prefix}_{name}", schemas)
    finally:
        if args.postgres:
            with make_engine(args.postgres).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    ratio = results["touchflow"] / results["bare"]
    print(
        json.dumps(
            {
                "machine": machine(),
                "load": load(),
                "store": "postgresql" if args.postgres else "sqlite",
                "events": args.events,
                "batch": args.batch,
                "concurrency": args.concurrency,
                "apis": args.apis,
                "bare_events_per_s": round(results["bare"]),
                "touchflow_events_per_s": round(results["touchflow"]),
                "ratio": round(ratio, 3),
                "segment_events_per_s": round(results["segment"]),
                "segment_to_events_batch": round(results["segment"] / results["touchflow"], 3),
            },
            indent=2,
        )
    )


async def measure(name: str, args: argparse.Namespace, work: Path, schema: str, schemas: list[str]) -> float:
    """Events per second through fresh servers: `bare` (one process), `touchflow` or `segment` (`--apis`)."""
    ports = [free_port() for _ in range(1 if name == "bare" else args.apis)]
    env = dict(os.environ)
    path, make = "/v1/events/batch", make_batches
    if args.postgres:
        with make_engine(args.postgres).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
    if name == "bare":
        if args.postgres:
            (work / "bare_app.py").write_text(BARE_PG_APP)
            libpq = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            env |= {"PYTHONPATH": str(work), "BENCH_PG": libpq, "BENCH_SCHEMA": schema}
        else:
            (work / "bare_app.py").write_text(BARE_APP)
            env |= {"PYTHONPATH": str(work), "BENCH_DB": str(work / "bare.db")}
        commands = [["-m", "uvicorn", "bare_app:app", "--port", str(ports[0]), "--log-level", "warning"]]
        envs = [env]
        headers = {"Content-Type": "application/json"}
    else:
        env |= api_env(work / name, ports[0], args.events)
        if args.postgres:
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
            env["TOUCHFLOW_DATABASE_URL"] = url
        commands = [["-m", "touchflow.cli", "api"] for _ in ports]
        envs = [env | {"TOUCHFLOW_API_PORT": str(port)} for port in ports]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}
        if name == "segment":
            path, make = "/v1/batch", make_segment_batches
    processes = [
        subprocess.Popen([sys.executable, *command], env=each, stdout=subprocess.DEVNULL)
        for command, each in zip(commands, envs, strict=True)
    ]
    try:
        for port in ports:
            await wait_for_port("127.0.0.1", port, 60)
        urls = [f"http://127.0.0.1:{port}{path}" for port in ports]
        for i, each in enumerate(urls):
            await blast([each], make(args.batch, args.batch, f"{name}-warm{i}"), 1, headers)
        batches = make(args.events, args.batch, name)
        seconds = await blast(urls, batches, args.concurrency, headers)
        return float(args.events / seconds)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
