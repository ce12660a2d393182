"""N abandoned-cart journeys waiting at once on one Temporal dev server and one `touchflow worker`: the
worker's resident memory while they wait, and whether every first reminder arrives when due.

    .venv/bin/python -m bench.waiting --carts 1000 --delay 60s      # the start rate first
    .venv/bin/python -m bench.waiting --carts 100000 --delay 20m

The dev server is started as `touchflow dev` starts it (SQLite file); the worker is a `touchflow worker`
process with the real activities, a SQLite store of N customers (email only, so reminder 1 falls back from
web push to email) and an SMTP server on loopback in a process of its own that stamps each arrival. Each
cart is a `cart_updated` event routed as the relay routes it; its reminder is due `--delay` after the event
(`TOUCHFLOW_CART_REMINDER_DELAY`; reminder 2 is a day later and not waited for). `--delay` must exceed the
time the starts take, or the first reminders fire before the last carts are waiting. The worker's VmRSS
(/proc/PID/status) is sampled every second.

Whether each reminder fires when due is read from Temporal's own record: for a sample of carts
(`--timer-sample`), the first timer's `TimerFired` time in the run's history against its `TimerStarted` time
plus its duration. Arrival at the SMTP server is that plus the worker delivering it; one worker delivers some
tens a second, while the benchmark makes reminders due as fast as carts were started (about a hundred a
second), so at large N arrivals trail the due times by the backlog. `--watch S` stops watching arrivals S
seconds after the first due time (100,000 reminders at one worker's rate take over an hour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import load, machine, rss_mb
from bench.journeys import (
    add_customers,
    count,
    gather_limited,
    journey_event,
    journey_router,
    make_store,
    spawn,
    stop,
    worker_env,
)
from bench.smtp import SmtpServer
from touchflow.settings import Settings, to_timedelta
from touchflow.temporal import DevServer, connect, free_port


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def timers_fired(client: Any, ids: list[str], due: dict[str, float], n: int) -> dict[str, Any]:
    """For `n` carts spread over the start order whose reminder is due by now: how late Temporal fired the
    first timer (`TimerFired` against `TimerStarted` plus its duration), from each run's history."""
    now = time.time()
    ready = [c for c in ids if due.get(f"{c}@example.com", now + 1) <= now - 5]
    chosen = ready[:: max(1, len(ready) // n)][:n]
    late: list[float] = []
    not_fired = 0
    for customer_id in chosen:
        handle = client.get_workflow_handle(f"abandoned_cart:{customer_id}:{customer_id}")
        history = await handle.fetch_history()
        started = next((e for e in history.events if e.HasField("timer_started_event_attributes")), None)
        fired = next((e for e in history.events if e.HasField("timer_fired_event_attributes")), None)
        if started is None or fired is None:
            not_fired += 1
            continue
        timeout = started.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        should = started.event_time.ToDatetime().timestamp() + timeout
        late.append(fired.event_time.ToDatetime().timestamp() - should)
    late.sort()
    return {
        "sampled": len(chosen),
        "not_fired": not_fired,
        "late_s": {
            "p50": round(statistics.median(late), 2) if late else None,
            "p99": round(quantile(late, 0.99), 2),
            "max": round(late[-1], 2) if late else None,
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--carts", type=int, default=100_000)
    parser.add_argument("--delay", default="20m", help="TOUCHFLOW_CART_REMINDER_DELAY")
    parser.add_argument("--concurrency", type=int, default=50, help="starts in flight")
    parser.add_argument("--grace", type=float, default=300, help="seconds to wait past the last due time")
    parser.add_argument("--watch", type=float, help="stop watching arrivals S seconds after the first due")
    parser.add_argument("--timer-sample", type=int, default=500, help="runs whose timers are read back")
    args = parser.parse_args()
    delay = to_timedelta(args.delay).total_seconds()
    work = Path(tempfile.mkdtemp(prefix="touchflow-waiting-"))
    smtp = SmtpServer(free_port())
    temporal = DevServer(db_file=work / "temporal.db", port=free_port(), ui_port=None)
    await temporal.start()
    result: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "carts": args.carts,
        "delay_s": delay,
        "load_before": load(),
    }
    samples: list[tuple[float, float]] = []
    worker = None
    try:
        client = await connect(Settings(temporal_address=temporal.address))
        database_url, store = make_store(work)
        ids = [f"c{i:07}" for i in range(args.carts)]
        add_customers(store, ids)
        router = journey_router(client, store)
        env = worker_env(
            work,
            database_url,
            temporal.address,
            smtp.port,
            cart_reminder_delay=args.delay,
            cart_second_reminder_delay="1d",
        )
        worker = spawn(["-m", "touchflow.cli", "worker"], env)
        pid = worker.pid

        async def sample() -> None:
            while True:
                samples.append((time.time(), rss_mb(pid)))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        await asyncio.sleep(5)  # the worker imports, connects and polls
        due: dict[str, float] = {}
        properties = {"items": [{"sku": "tee-1", "name": "Tee", "qty": 1, "price": 199000}], "total": 199000}

        def cart(customer_id: str) -> Any:
            async def call() -> None:
                at = time.time()
                event = journey_event(
                    f"cu-{customer_id}", customer_id, "cart_updated", properties | {"cart_id": customer_id}
                )
                await router.route(event)
                due[f"{customer_id}@example.com"] = at + delay

            return call

        result["rss_before_starts_mb"] = round(rss_mb(pid))
        took = await gather_limited((cart(c) for c in ids), args.concurrency)
        result["started_per_s"] = round(args.carts / took, 1)
        result["start_seconds"] = round(took)
        first_due = min(due.values())
        result["all_started_before_first_due"] = time.time() < first_due
        result["waiting_after_starts"] = await count(client, "abandoned_cart", "Running")
        result["received_before_last_start"] = smtp.count()[0]
        await asyncio.sleep(max(0.0, first_due - time.time() - 5))
        # Just before the first reminder is due: every cart should be waiting now.
        result["waiting_before_first_due"] = await count(client, "abandoned_cart", "Running")
        result["rss_all_waiting_mb"] = round(samples[-1][1])
        last_due = max(due.values())
        until = last_due + args.grace if args.watch is None else first_due + args.watch
        while time.time() < until and smtp.count()[1] < args.carts:
            await asyncio.sleep(2)
        sampler.cancel()
        arrivals = smtp.arrivals()
        late = sorted(arrivals[a] - due[a] for a in arrivals if a in due)
        result["watched_s"] = round(time.time() - first_due)
        result["reminders_due_while_watched"] = sum(1 for at in due.values() if at <= time.time())
        result["reminders_received"], result["distinct_addresses"] = smtp.count()
        result["missing"] = args.carts - len(late)
        result["timers"] = await timers_fired(client, ids, due, args.timer_sample)
        result["lateness_s"] = {
            "min": round(late[0], 1) if late else None,
            "p50": round(statistics.median(late), 1) if late else None,
            "p99": round(quantile(late, 0.99), 1),
            "max": round(late[-1], 1) if late else None,
            "over_60s": sum(1 for x in late if x > 60),
        }
        result["rss_mb"] = {
            "peak": round(max(r for _, r in samples)),
            "end": round(samples[-1][1]),
        }
        result["load_after"] = load()
        print(json.dumps(result, indent=2))
    finally:
        if worker is not None:
            stop(worker)
        temporal.stop()
        smtp.stop()


if __name__ == "__main__":
    asyncio.run(main())
