"""The bare workflow `bench.throughput` measures touchflow against: one no-op activity, nothing else.

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233 --task-queue bare

runs a worker for it (the SDK's defaults, the same activity slots as touchflow's worker). It lives in a module
of its own because the workflow sandbox re-imports a workflow's module, which `__main__` cannot be.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow


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
        workflows=[BareWorkflow],
        activities=[noop],
        max_concurrent_activities=100,
    )
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
