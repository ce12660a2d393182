"""A broadcast by email to N customers, against plain aiosmtplib sending the same messages to the same server.

    .venv/bin/python -m bench.broadcast [--customers 100000] [--skip-baseline] [--extra-workers 0]

The SMTP server (aiosmtpd on loopback) runs in a process of its own and counts what it receives per address,
so both senders meet the same server and duplicates show. touchflow runs as in production shape on one
machine: the Temporal dev server (`temporal server start-dev`, SQLite file), a worker with the real
activities, a SQLite store; the broadcast is started the way `POST /v1/broadcasts` starts it. The default
settings stand (frequency caps on), except quiet hours, which would defer a run at night. Memory: the
worker process's resident size before the broadcast and at its peak during it. `--extra-workers K` starts K
more `touchflow worker` processes on the same task queue, store and SMTP server (production runs any number):
the batches spread over all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import text

from bench.common import machine
from bench.journeys import worker_env
from bench.smtp import SmtpServer
from touchflow.activities.broadcast import SENDS_AT_ONCE
from touchflow.channels import OutboundMessage
from touchflow.channels.email import Email
from touchflow.db import make_engine, migrate
from touchflow.models import Broadcast, Customer
from touchflow.router import Router
from touchflow.settings import Settings
from touchflow.storage import Store
from touchflow.storage.base import insert_ignore
from touchflow.temporal import DevServer, connect, free_port
from touchflow.testing import registry_of
from touchflow.worker import build_activities, build_worker

CONTENT = {
    "email": {
        "subject": "Our winter sale, {{ customer.first_name }}",
        "text": "20% off everything until Sunday. {{ unsubscribe_url }}",
        "html": '<p>20% off everything until Sunday.</p><img src="{{ open_pixel_url }}">',
    }
}


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


async def baseline(settings: Settings, ids: list[str], concurrency: int) -> float:
    """Plain aiosmtplib: the same messages (built by the email channel), one connection each, as many at
    once as touchflow's batches have in flight."""
    email = Email.from_settings(settings)
    gate = asyncio.Semaphore(concurrency)

    async def one(customer_id: str) -> None:
        message = OutboundMessage(
            key=f"bench:{customer_id}",
            address=f"{customer_id}@example.com",
            content={
                "subject": "Our winter sale, friend",
                "text": "20% off everything until Sunday. https://shop.example/unsubscribe/x",
                "html": '<p>20% off everything until Sunday.</p><img src="https://shop.example/t/o/x.gif">',
            },
            marketing=True,
            unsubscribe_url="https://shop.example/unsubscribe/x",
        )
        async with gate:
            await aiosmtplib.send(
                email.build(message).as_bytes(),
                sender="shop@example.com",
                recipients=[message.address],
                hostname="127.0.0.1",
                port=settings.smtp_port,
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in ids))
    return time.perf_counter() - start


async def batch_times(handle: Any) -> dict[str, Any]:
    """From the workflow's history: how many batches, how long one took (started to completed), how long
    a batch waited for a worker (scheduled to started), and the span from the first to the last."""
    scheduled: dict[int, datetime] = {}
    started: dict[int, datetime] = {}
    runs, waits = [], []
    first = last = None
    async for event in handle.fetch_history_events():
        at = event.event_time.ToDatetime()
        if event.HasField("activity_task_scheduled_event_attributes"):
            if event.activity_task_scheduled_event_attributes.activity_type.name == "send_broadcast_batch":
                scheduled[event.event_id] = at
                first = first or at
        elif event.HasField("activity_task_started_event_attributes"):
            origin = event.activity_task_started_event_attributes.scheduled_event_id
            if origin in scheduled:
                started[origin] = at
                waits.append((at - scheduled[origin]).total_seconds())
        elif event.HasField("activity_task_completed_event_attributes"):
            origin = event.activity_task_completed_event_attributes.scheduled_event_id
            if origin in started:
                runs.append((at - started[origin]).total_seconds())
                last = at
    span = (last - first).total_seconds() if first and last else 0.0
    return {
        "count": len(runs),
        "mean_s": round(sum(runs) / max(1, len(runs)), 2),
        "max_s": round(max(runs, default=0.0), 2),
        "mean_wait_s": round(sum(waits) / max(1, len(waits)), 3),
        "span_s": round(span, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--extra-workers", type=int, default=0)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="the store on PostgreSQL (a schema of its own, dropped after), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="touchflow-broadcast-"))
    smtp_port = free_port()
    smtp = SmtpServer(smtp_port)

    temporal = DevServer(db_file=work / "temporal.db", port=free_port(), ui_port=None)
    await temporal.start()
    database_url = f"sqlite:///{work / 'touchflow.db'}"
    schema = f"bench_{secrets.token_hex(5)}"
    if args.postgres:
        with make_engine(args.postgres).begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        database_url = f"{args.postgres}?options=-csearch_path%3D{schema}"
    settings = Settings(
        home=work,
        database_url=database_url,
        temporal_address=temporal.address,
        task_queue="bench",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        secret_key="bench-secret",
        public_url="https://shop.example",
        quiet_hours="off",
    )
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    store = Store(engine)
    ids = [f"c{n:07}" for n in range(args.customers)]
    with engine.begin() as conn:
        for start in range(0, len(ids), 5000):
            rows = [
                Customer(id=c, email=f"{c}@example.com", attributes={"first_name": "An"}).model_dump()
                for c in ids[start : start + 5000]
            ]
            insert_ignore(conn, Customer, rows)
    result: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).date().isoformat(),
        "customers": args.customers,
        "store": "postgresql" if args.postgres else "sqlite",
    }
    concurrency = settings.broadcast_concurrency * SENDS_AT_ONCE
    env = worker_env(work, settings.database_url or "", temporal.address, smtp_port)
    extra = [
        subprocess.Popen(
            [sys.executable, "-m", "touchflow.cli", "worker"], env=env, stdout=subprocess.DEVNULL
        )
        for _ in range(args.extra_workers)
    ]
    result["workers"] = 1 + args.extra_workers
    try:
        if not args.skip_baseline:
            took = await baseline(settings, ids, concurrency)
            sent, distinct = smtp.count()
            result["aiosmtplib"] = {"seconds": round(took, 1), "per_s": round(sent / took), "received": sent}
            smtp.reset()
        if extra and args.skip_baseline:
            await asyncio.sleep(10)  # the extra workers start polling
        registry = registry_of()
        client = await connect(settings)
        activities = build_activities(settings, registry, store)
        async with build_worker(client, settings, activities, registry):
            broadcast = store.broadcasts.create(
                Broadcast(
                    id="bench",
                    name="winter_sale",
                    audience={"customer_ids": ids},
                    via=["email"],
                    content=CONTENT,
                )
            )
            before, peak = rss_mb(), rss_mb()
            began = time.perf_counter()
            router = Router(client, store, settings.task_queue, registry)
            await router.start_broadcast(broadcast.id, None, settings.delivery_attempt_timeout)
            handle = client.get_workflow_handle("broadcast:bench")
            done = asyncio.create_task(handle.result())
            while not done.done():
                await asyncio.wait([done], timeout=1)
                peak = max(peak, rss_mb())
            took = time.perf_counter() - began
            result["batches"] = await batch_times(handle)
            sent, distinct = smtp.count()
            result["touchflow"] = {
                "seconds": round(took, 1),
                "per_s": round(sent / took),
                "received": sent,
                "distinct_addresses": distinct,
                "rss_before_mb": round(before),
                "rss_peak_mb": round(peak),
            }
        if "aiosmtplib" in result:
            result["ratio"] = round(result["touchflow"]["per_s"] / result["aiosmtplib"]["per_s"], 2)
        print(json.dumps(result, indent=2))
    finally:
        for process in extra:
            process.terminate()
            process.wait(30)
        temporal.stop()
        if args.postgres:
            engine.dispose()
            with make_engine(args.postgres).begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        smtp.stop()


if __name__ == "__main__":
    asyncio.run(main())
