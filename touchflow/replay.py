"""Replaying journey histories against the code about to run them: the gate before a deploy.

A change to a journey's code must still replay the runs in flight (Temporal re-executes the code against each
run's recorded history); a change that does not would stall every one of them. `touchflow replay --journey
NAME` fetches recent runs of one journey from a Temporal server (or reads saved ones) and replays them here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from touchflow.worker import WORKFLOW_RUNNER
from touchflow.workflows.registry import Registry


@dataclass(frozen=True)
class ReplayFailure:
    workflow_id: str
    error: str


async def fetch_histories(client: Client, journey: str, limit: int) -> list[WorkflowHistory]:
    """The newest `limit` runs of one journey (open and closed), with their histories."""
    histories: list[WorkflowHistory] = []
    query = f'WorkflowType = "{journey}"'
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    return histories


def save_histories(histories: Sequence[WorkflowHistory], folder: Path) -> list[Path]:
    """Write each history as `<workflow id>.json` (Temporal's JSON form) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for history in histories:
        path = folder / f"{re.sub(r'[^A-Za-z0-9_.:-]', '_', history.workflow_id)}.json"
        path.write_text(history.to_json())
        paths.append(path)
    return paths


def load_histories(folder: Path) -> list[WorkflowHistory]:
    return [WorkflowHistory.from_json(path.stem, path.read_text()) for path in sorted(folder.glob("*.json"))]


def workflow_type(history: WorkflowHistory) -> str:
    """The journey a history belongs to (its first event names the workflow type)."""
    first = history.events[0] if history.events else None
    if first is None or not first.HasField("workflow_execution_started_event_attributes"):
        return ""
    return str(first.workflow_execution_started_event_attributes.workflow_type.name)


async def replay_histories(
    registry: Registry, histories: Sequence[WorkflowHistory] | Path, journey: str | None = None
) -> list[ReplayFailure]:
    """Replay histories (or a folder of `*.json`) against the registry's code as it is now.

    Returns the runs the current code cannot continue (non-determinism, or a workflow task that fails),
    each with the reason; empty when every run replays. With `journey`, only that journey's histories.
    """
    if isinstance(histories, Path):
        histories = load_histories(histories)
    replayer = Replayer(
        workflows=[spec.workflow for spec in registry.values()], workflow_runner=WORKFLOW_RUNNER
    )
    failures: list[ReplayFailure] = []
    for history in histories:
        if journey is not None and workflow_type(history) != journey:
            continue
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            error = f"{type(result.replay_failure).__name__}: {result.replay_failure}"
            failures.append(ReplayFailure(history.workflow_id, error))
    return failures
