"""Replay saved histories of every built-in journey (finished and mid-wait) against the current code.

A change that would break a customer already in a journey fails here: guard it with `workflow.patched`
(docs/journeys.md). Re-record with `.venv/bin/python -m tests.workflows.record_histories [--journey NAME]`.
The replay is the testing kit's (`touchflow.testing.replay_histories`), the one `touchflow replay` uses.
"""

from __future__ import annotations

from pathlib import Path

from touchflow.testing import registry_of, replay_histories
from touchflow.workflows.registry import BUILTIN_JOURNEYS

HISTORIES = Path(__file__).parent / "histories"


def test_every_journey_has_saved_histories_including_one_mid_wait() -> None:
    names = {path.stem for path in HISTORIES.glob("*.json")}
    for journey in BUILTIN_JOURNEYS:
        assert any(name.startswith(journey) for name in names), f"no saved history of {journey}"
        assert f"{journey}_mid_wait" in names, f"no mid-wait history of {journey}"
        # Recorded before deliveries went local (`LOCAL_DELIVERIES`): runs still in flight from then.
        assert f"{journey}_mid_wait_v1" in names, f"no mid-wait history of {journey} from before"


async def test_every_saved_history_replays_on_the_current_code() -> None:
    failures = await replay_histories(registry_of(builtins=True), HISTORIES)
    assert failures == []


async def test_an_incompatible_change_fails_the_replay() -> None:
    """The check can fail: the saved welcome runs replayed against a plan that waits before its first send."""
    from tests.support.changed_welcome import ChangedWelcome

    failures = await replay_histories(registry_of(ChangedWelcome), HISTORIES, journey="welcome")
    assert sorted(failure.workflow_id for failure in failures) == [
        "welcome_completed",
        "welcome_completed_v1",
        "welcome_mid_wait",
        "welcome_mid_wait_v1",
    ]
    assert all("Nondeterminism" in failure.error or "nondeterminism" in failure.error for failure in failures)
