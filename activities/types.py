"""The data a journey hands its activities and gets back: one input and one result type per activity.

Workflows import this module (it does no I/O), so fields can be added with defaults without breaking running
histories.
"""

# No `from __future__ import annotations` here: Temporal's data converter reads these types' hints for every
# payload it decodes (`typing.get_type_hints`), and hints written as strings are compiled anew each time,
# about five times the cost of real ones (0.16 against 0.035 ms for `SendStepInput`).

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from touchflow.vocabulary import JourneyStatus, Reentry, Stage


class SendStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    # Not now: the step may go out at `retry_at` (quiet hours, a provider's night window); the journey sleeps.
    DEFERRED = "deferred"
    # Over a frequency cap: not sent; the journey decides whether to go on without it (built-ins do).
    CAPPED = "capped"


@dataclass
class EnterJourneyInput:
    journey: str
    workflow_id: str
    run_id: str
    customer_id: str
    entry_key: str | None
    reentry: Reentry
    cooldown_seconds: float | None = None
    # The event that started the run (None in runs recorded before it was passed).
    trigger_event_id: str | None = None


@dataclass
class EnterJourneyResult:
    admitted: bool
    entered_at: datetime
    entry_id: int = 0
    reason: str | None = None
    # Every journey timing setting, in seconds, read once per run so a replay sees the same values.
    timings: dict[str, float] = field(default_factory=dict)
    # The other journey settings (`Journey.param`): numbers and tables, captured the same way.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeaveJourneyInput:
    run_id: str
    status: JourneyStatus
    ended_by: str | None = None


@dataclass
class SendStepInput:
    journey: str
    step: str
    workflow_id: str
    customer_id: str
    # Business idempotency key: journey, customer, entry and step (and occurrence for repeated steps).
    key: str
    channels: list[str]
    stage: Stage
    entered_at: datetime
    transactional: bool = False
    # The event whose properties the template renders (e.g. the newest cart_updated).
    event_id: str | None = None
    # Guard: skip the send when one of these events was stored since the journey began.
    exit_on: list[str] = field(default_factory=list)
    exit_match: dict[str, Any] = field(default_factory=dict)
    # The event that started the run: never counted as its exit or goal (nor older events of its name).
    trigger_event_id: str | None = None
    variant: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # The run's own time when it asked for the step: a local activity's clock starts there.
    asked_at: datetime | None = None


@dataclass
class SendStepResult:
    status: SendStatus
    delivery_id: int
    channel: str | None = None
    reason: str | None = None
    retry_at: datetime | None = None
    # Set when the guard found an exit event in the store: the journey ends as if it had been signalled.
    ended_by: str | None = None
    ended_by_event_id: str | None = None


@dataclass
class IssueCouponInput:
    customer_id: str
    # Business key (workflow id, entry, step): a retried or replayed call gets the same coupon back.
    key: str
    journey: str
    entry_key: str | None
    # Journey time (workflow.now() + validity), so the reminder before expiry lines up with it.
    expires_at: datetime
    # Percent off, or an amount in a currency (`VND`). None in runs recorded before journeys chose it: the
    # issuing worker's default then applies.
    value: float | None = None
    unit: str | None = None


@dataclass
class IssueCouponResult:
    """What the journey learns about its coupon: never the code itself (it stays out of the history)."""

    coupon_id: int
    value: float
    unit: str
    expires_at: datetime


@dataclass
class RefreshSegmentsInput:
    """Which segments to re-evaluate over every profile; None: all of them."""

    names: list[str] | None = None


@dataclass
class RefreshSegmentsResult:
    entered: int = 0
    exited: int = 0


@dataclass
class RefreshInsightInput:
    """Which journeys' rollups to bring up to date; None: every journey of the registry."""

    journeys: list[str] | None = None


@dataclass
class RefreshInsightResult:
    journeys: int = 0
    hours: int = 0  # hours of deliveries and runs counted again


# -- broadcasts ---------------------------------------------------------------------------------------------


@dataclass
class PlanBroadcastInput:
    broadcast_id: str
    # When sending begins (workflow time): recipients' local `local_time` is the next one from then on.
    starts_at: datetime


@dataclass
class BroadcastSlot:
    """Recipients due at one time (all of them, or those whose local clock shows `local_time` then)."""

    due_at: datetime
    batches: int


@dataclass
class BroadcastPlan:
    total: int
    slots: list[BroadcastSlot]
    # Where batches run: a channel's own rate-limited queue when the worker has a limit for the first channel.
    task_queue: str
    batch_size: int
    concurrency: int
    rate: float | None = None


@dataclass
class SendBatchInput:
    broadcast_id: str
    due_at: datetime
    batch: int


@dataclass
class SendBatchResult:
    recipients: int
    # The latest time a deferred recipient (quiet hours) may go: the batch is sent again then.
    deferred_until: datetime | None = None


@dataclass
class MarkBroadcastInput:
    broadcast_id: str
    status: str
