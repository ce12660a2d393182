"""Replay saved histories of every built-in journey (finished and mid-wait) against the current code.

A change that would break a customer already in a journey fails here: guard it with `workflow.patched`
(docs/journeys.md). Re-record with `.venv/bin/python -m tests.workflows.record_histories`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from touchflow.workflows.registry import BUILTIN_JOURNEYS

BUILTINS = {name: cls.spec for name, cls in BUILTIN_JOURNEYS.items()}

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_journey_has_saved_histories_including_one_mid_wait() -> None:
    names = {path.stem for path in HISTORIES}
    for journey in BUILTINS:
        assert any(name.startswith(journey) for name in names), f"no saved history of {journey}"
        assert f"{journey}_mid_wait" in names, f"no mid-wait history of {journey}"


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_history_replays_on_the_current_code(path: Path) -> None:
    replayer = Replayer(workflows=[spec.workflow for spec in BUILTINS.values()])
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)
