"""What `bench.throughput` and `bench.waiting` share: a dev server, a store with customers, a `touchflow
worker` process, journeys started as the relay starts them, and counting runs by status."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.common import cpu_by_thread, cpu_seconds, rss_mb
from touchflow.db import make_engine, migrate
from touchflow.models import Customer, Event
from touchflow.router import Router
from touchflow.storage import Store
from touchflow.storage.base import insert_ignore
from touchflow.testing import registry_of


def make_store(work: Path) -> tuple[str, Store]:
    url = f"sqlite:///{work / 'touchflow.db'}"
    engine = make_engine(url)
    migrate(engine)
    return url, Store(engine)


def add_customers(store: Store, ids: list[str]) -> None:
    with store.engine.begin() as conn:
        for start in range(0, len(ids), 5000):
            rows = [
                Customer(id=c, email=f"{c}@example.com", attributes={"first_name": "An"}).model_dump()
                for c in ids[start : start + 5000]
            ]
            insert_ignore(conn, Customer, rows)


def worker_env(
    work: Path, database_url: str, temporal: str, smtp_port: int, **timings: str
) -> dict[str, str]:
    """A production `touchflow worker`'s environment; `timings` shorten journey waits."""
    return (
        dict(os.environ)
        | {
            "TOUCHFLOW_HOME": str(work),
            "TOUCHFLOW_DATABASE_URL": database_url,
            "TOUCHFLOW_TEMPORAL_ADDRESS": temporal,
            "TOUCHFLOW_TASK_QUEUE": "bench",
            "TOUCHFLOW_SMTP_HOST": "127.0.0.1",
            "TOUCHFLOW_SMTP_PORT": str(smtp_port),
            "TOUCHFLOW_SECRET_KEY": secrets.token_urlsafe(32),
            "TOUCHFLOW_API_KEYS": secrets.token_urlsafe(32),
            "TOUCHFLOW_PUBLIC_URL": "https://shop.example",
            # Quiet hours would defer a run at night; the other defaults (frequency caps) stand.
            "TOUCHFLOW_QUIET_HOURS": "off",
            "TOUCHFLOW_LOG_LEVEL": "WARNING",
        }
        | {f"TOUCHFLOW_{name.upper()}": value for name, value in timings.items()}
    )


def spawn(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def gather_limited(calls: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the calls, `concurrency` at a time; the seconds it took."""
    pending = iter(calls)

    async def lane() -> None:
        for call in pending:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


def journey_router(client: Client, store: Store) -> Router:
    return Router(client, store, "bench", registry_of(builtins=True))


def journey_event(event_id: str, customer_id: str, name: str, properties: dict[str, Any]) -> Event:
    return Event(
        id=event_id,
        customer_id=customer_id,
        name=name,
        properties=properties,
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
    )


async def count(client: Client, workflow_type: str, status: str) -> int:
    return (
        await client.count_workflows(f"WorkflowType = '{workflow_type}' AND ExecutionStatus = '{status}'")
    ).count


async def until_completed(
    client: Client,
    workflow_type: str,
    runs: int,
    pid: int,
    timeout: float,
    at_tenth: Callable[[], object] | None = None,
    *,
    already: int = 0,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Poll the count of completed runs of this type until `runs` more than `already` (those of earlier
    rounds) have completed. The rate is taken between 10 % and 90 % of them, so the worker's start (imports,
    connecting) and the last stragglers do not count; so is the CPU time the worker (and the server,
    `server_pid`) spent per run meanwhile, which moves less than the rate when the machine is shared. The
    worker's resident memory is sampled throughout. `at_tenth` is called once 10 % are done (to start a
    profile)."""
    deadline = time.perf_counter() + timeout
    pids = {"worker": pid, **({"server": server_pid} if server_pid is not None else {})}
    marks: dict[int, tuple[float, dict[str, float]]] = {}
    threads: dict[int, dict[str, float]] = {}
    peak = 0.0
    done = 0
    while done < runs and time.perf_counter() < deadline:
        done = await count(client, workflow_type, "Completed") - already
        now = time.perf_counter()
        for tenth in (1, 9):
            if done >= runs * tenth / 10 and tenth not in marks:
                marks[tenth] = now, {name: cpu_seconds(each) for name, each in pids.items()}
                threads[tenth] = cpu_by_thread(pid)
                if tenth == 1 and at_tenth is not None:
                    at_tenth()
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.2)
    result: dict[str, Any] = {"completed": done, "worker_rss_peak_mb": round(peak)}
    if 1 in marks and 9 in marks and marks[9][0] > marks[1][0]:
        (start, cpu_start), (end, cpu_end) = marks[1], marks[9]
        result["per_s"] = round(0.8 * runs / (end - start), 1)
        for name in pids:
            spent = cpu_end[name] - cpu_start[name]
            result[f"{name}_cpu_ms_per_run"] = round(1000 * spent / (0.8 * runs), 1)
        # Which of the worker's threads spent it: the interpreter's, or the SDK's Rust core.
        first, last = threads[1], threads[9]
        result["worker_cpu_ms_per_run_by_thread"] = {
            thread: round(1000 * (last[thread] - first.get(thread, 0.0)) / (0.8 * runs), 1)
            for thread in sorted(last)
        }
    return result
