"""The words touchflow's layers share across the Temporal boundary: one definition each, no string twins.

Pure enums (no I/O, no imports beyond temporalio's id policies), so journeys, activities and the store all use
these very types; they serialise as their string values, so histories written before are read the same.
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import WorkflowIDReusePolicy


class Stage(StrEnum):
    """The stages of a customer journey; every step serves one, and analytics group by them."""

    AWARENESS = "awareness"
    CONSIDERATION = "consideration"
    PURCHASE = "purchase"
    RETENTION = "retention"
    ADVOCACY = "advocacy"


class Reentry(StrEnum):
    """How often one customer may go through a journey (per entry key, where the journey has one).

    Each rule is a Temporal id policy plus a check on the store's `journey_entries` (kept after Temporal's
    retention has forgotten a closed run), made by the `enter_journey` activity:

    | rule          | id reuse policy  | store check at entry (`enter_journey`)      |
    | ------------- | ---------------- | ------------------------------------------- |
    | ONCE          | REJECT_DUPLICATE | any earlier entry: not admitted              |
    | ONE_AT_A_TIME | ALLOW_DUPLICATE  | none                                        |
    | COOLDOWN      | ALLOW_DUPLICATE  | an entry within `cooldown`: not admitted     |

    With every rule the id conflict policy is USE_EXISTING: an event while a run is open feeds that run.
    """

    ONCE = "once"  # once ever
    ONE_AT_A_TIME = "one_at_a_time"  # again after the previous run ended
    COOLDOWN = "cooldown"  # again once `cooldown` has passed since the previous entry

    @property
    def id_reuse_policy(self) -> WorkflowIDReusePolicy:
        if self is Reentry.ONCE:
            return WorkflowIDReusePolicy.REJECT_DUPLICATE
        return WorkflowIDReusePolicy.ALLOW_DUPLICATE


class JourneyStatus(StrEnum):
    """Where a customer's run through a journey stands (`journey_entries.status`) or how it ended."""

    ACTIVE = "active"
    CONVERTED = "converted"
    EXITED = "exited"
    COMPLETED = "completed"
    # A run that the re-entry rule kept out: its outcome only; the store records it `exited`.
    NOT_ADMITTED = "not_admitted"


class BroadcastStatus(StrEnum):
    """Where a broadcast stands (its workflow writes it; `GET /v1/broadcasts/{id}` shows it)."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
