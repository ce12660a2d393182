"""The workflows `bench.throughput` measures touchflow against, doing no work of their own:

- `BareWorkflow`: one no-op activity, nothing else (the issue's yardstick);
- `ShapedWorkflow`: the welcome journey's shape on Temporal with no-op activities: started by
  signal-with-start, five local activities (entering, the three deliveries, leaving), a one-second timer and
  two search-attribute upserts (the stages), so its history has the welcome run's events.
  The rate touchflow gets against it is what touchflow's own work costs; the rest is Temporal's.

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233 --task-queue bare

runs a worker for both (the SDK's defaults, the same activity slots as touchflow's worker). They live in a
module of their own because the workflow sandbox re-imports a workflow's module, which `__main__` cannot be.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("JourneyStage")


@activity.defn
async def noop(customer_id: str) -> str:
    return customer_id


@workflow.defn
class BareWorkflow:
    @workflow.run
    async def run(self, customer_id: str) -> str:
        return await workflow.execute_activity(
            noop, customer_id, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn
class ShapedWorkflow:
    def __init__(self) -> None:
        self.trigger: dict[str, Any] | None = None

    @workflow.signal
    def on_event(self, event: dict[str, Any]) -> None:
        self.trigger = event

    @workflow.run
    async def run(self, customer_id: str) -> str:
        await workflow.wait_condition(lambda: self.trigger is not None)
        limit = timedelta(seconds=30)
        await workflow.execute_local_activity(noop, customer_id, start_to_close_timeout=limit)
        workflow.upsert_search_attributes([STAGE.value_set("awareness")])
        for _ in range(2):
            await workflow.execute_local_activity(noop, customer_id, start_to_close_timeout=limit)
        await workflow.sleep(timedelta(seconds=1))
        workflow.upsert_search_attributes([STAGE.value_set("consideration")])
        await workflow.execute_local_activity(noop, customer_id, start_to_close_timeout=limit)
        return await workflow.execute_local_activity(noop, customer_id, start_to_close_timeout=limit)


async def main() -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default="bare")
    args = parser.parse_args()
    client = await Client.connect(args.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for each in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(each, stop.set)
    worker = Worker(
        client,
        task_queue=args.task_queue,
        workflows=[BareWorkflow, ShapedWorkflow],
        activities=[noop],
        max_concurrent_activities=100,
    )
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
