"""Welcome journeys completed per second by one `touchflow worker`, against a bare workflow with one no-op
activity (`bench.bare`) on the same Temporal dev server, in the same run.

    .venv/bin/python -m bench.throughput [--journeys 2000] [--rounds 2]

The dev server is started as `touchflow dev` starts it (`temporal server start-dev`, SQLite file, WAL). Each
round starts N bare workflows with no worker polling, then starts the bare worker and times how fast the
backlog completes; then the same for N welcome journeys (started as the relay starts them: signal-with-start,
`Router.route`) and a `touchflow worker` process with the real activities, a SQLite store and an SMTP server
on loopback in a process of its own. The nudge's wait is shortened to one second, so a journey is the welcome
email, the onsite message, a timer and the nudge email. Rates are taken between 10 % and 90 % of the backlog
completed; rounds alternate so a dev server that grows slower with its history weighs on both alike.

Between the two, each round runs N of `bench.bare.ShapedWorkflow`: the welcome run's shape on Temporal (the
same history events) with no-op activities. `ratio` is welcome to bare (the issue's target, 0.8);
`ratio_to_shaped` is welcome to the same shape doing nothing: what touchflow's own work costs. After each
kind, 100 of its runs' histories are read for workflow tasks that timed out (`task_timeouts_in_sample`): a
busy worker's sticky steps that waited too long and were replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TimeoutType
from temporalio.client import Client

from bench.bare import BareWorkflow, ShapedWorkflow
from bench.common import load, machine
from bench.journeys import (
    add_customers,
    gather_limited,
    journey_event,
    journey_router,
    make_store,
    spawn,
    stop,
    until_completed,
    worker_env,
)
from bench.pyspy import record
from bench.smtp import SmtpServer
from touchflow.settings import Settings
from touchflow.temporal import DevServer, connect, free_port

SAMPLE = 100  # runs of each kind whose histories are read for workflow-task timeouts


async def history_length(client: Client, workflow_id: str) -> int:
    """Events in one run's history: the work the server does for it (each a write to its SQLite file)."""
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


async def task_timeouts(client: Client, workflow_ids: list[str]) -> dict[str, int]:
    """Workflow tasks that timed out in these runs' histories, by kind. A sticky task no worker started
    within `sticky_queue_schedule_to_start_timeout` times out `schedule_to_start` and goes back to the
    shared queue with the whole history: the worker replays the run from its start."""
    kinds: dict[str, int] = {}
    for workflow_id in workflow_ids:
        for event in (await client.get_workflow_handle(workflow_id).fetch_history()).events:
            if event.HasField("workflow_task_timed_out_event_attributes"):
                kind = TimeoutType.Name(event.workflow_task_timed_out_event_attributes.timeout_type)
                kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journeys", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50, help="starts in flight")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy each round's welcome worker (30 s from 10 %% done): FILE p.txt gives p.round1.txt, ...",
        metavar="FILE",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="touchflow-throughput-"))
    smtp = SmtpServer(free_port())
    temporal = DevServer(db_file=work / "temporal.db", port=free_port(), ui_port=None)
    await temporal.start()
    result: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "journeys": args.journeys,
        "load_before": load(),
        "rounds": [],
    }
    try:
        client = await connect(Settings(temporal_address=temporal.address))
        database_url, store = make_store(work)
        router = journey_router(client, store)
        env = worker_env(work, database_url, temporal.address, smtp.port, welcome_nudge_delay="1s")
        n = args.journeys
        for round_ in range(args.rounds):
            row: dict[str, Any] = {}
            ids = [f"r{round_}-c{i:06}" for i in range(n)]

            def bare_start(customer_id: str) -> Any:
                return lambda: client.start_workflow(
                    BareWorkflow.run, customer_id, id=f"bare:{customer_id}", task_queue="bare"
                )

            def shaped_start(customer_id: str) -> Any:
                return lambda: client.start_workflow(
                    ShapedWorkflow.run,
                    customer_id,
                    id=f"shaped:{customer_id}",
                    task_queue="bare",
                    start_signal="on_event",
                    start_signal_args=[{"id": f"su-{customer_id}", "name": "signed_up"}],
                )

            for name, workflow_type, start in (
                ("bare", "BareWorkflow", bare_start),
                ("shaped", "ShapedWorkflow", shaped_start),
            ):
                took = await gather_limited((start(c) for c in ids), args.concurrency)
                worker = spawn(["-m", "bench.bare", "--address", temporal.address, "--task-queue", "bare"])
                try:
                    row[name] = await until_completed(
                        client,
                        workflow_type,
                        n,
                        worker.pid,
                        timeout=1800,
                        already=round_ * n,
                        server_pid=temporal.process.pid if temporal.process else None,
                    )
                finally:
                    stop(worker)
                row[name]["started_per_s"] = round(n / took)
                row[name]["history_events"] = await history_length(client, f"{name}:{ids[0]}")
                row[name]["task_timeouts_in_sample"] = await task_timeouts(
                    client, [f"{name}:{c}" for c in ids[:: max(1, n // SAMPLE)]]
                )

            add_customers(store, ids)

            def signup(customer_id: str) -> Any:
                return lambda: router.route(journey_event(f"su-{customer_id}", customer_id, "signed_up", {}))

            took = await gather_limited((signup(c) for c in ids), args.concurrency)
            smtp.reset()
            worker = spawn(["-m", "touchflow.cli", "worker"], env)
            profile = None
            if args.profile:
                out = args.profile.with_name(f"{args.profile.stem}.round{round_ + 1}{args.profile.suffix}")
                profile = functools.partial(record, worker.pid, out, 30)
            try:
                row["welcome"] = await until_completed(
                    client,
                    "welcome",
                    n,
                    worker.pid,
                    timeout=1800,
                    at_tenth=profile,
                    already=round_ * n,
                    server_pid=temporal.process.pid if temporal.process else None,
                )
            finally:
                stop(worker)
            row["welcome"]["started_per_s"] = round(n / took)
            row["welcome"]["history_events"] = await history_length(client, f"welcome:{ids[0]}")
            row["welcome"]["task_timeouts_in_sample"] = await task_timeouts(
                client, [f"welcome:{c}" for c in ids[:: max(1, n // SAMPLE)]]
            )
            row["welcome"]["emails_received"], row["welcome"]["distinct_addresses"] = smtp.count()
            if "per_s" in row["bare"] and "per_s" in row["welcome"]:
                row["ratio"] = round(row["welcome"]["per_s"] / row["bare"]["per_s"], 2)
            if "per_s" in row["shaped"] and "per_s" in row["welcome"]:
                row["ratio_to_shaped"] = round(row["welcome"]["per_s"] / row["shaped"]["per_s"], 2)
            row["load"] = load()
            result["rounds"].append(row)
            print(json.dumps(row), flush=True)
        print(json.dumps(result, indent=2))
    finally:
        temporal.stop()
        smtp.stop()


if __name__ == "__main__":
    asyncio.run(main())
