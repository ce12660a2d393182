"""Loyalty nudge: one long-lived run per customer that follows points and tier and nudges in time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

from touchflow.workflows.base import (
    Journey,
    JourneyEvent,
    Param,
    Reentry,
    Stage,
    Step,
    Timing,
    as_datetime,
    as_int,
    as_number,
    as_text,
    journey,
)

# With nothing scheduled (every nudge given), look again after this long anyway.
IDLE_CHECK = timedelta(days=30)


@journey(
    starts_on=("order_placed", "loyalty_points_changed"),
    reentry=Reentry.ONE_AT_A_TIME,
    timings={
        "loyalty_inactive_after": Timing("60d", "Loyalty: inactivity before the win-back nudge."),
        "loyalty_expiry_warning": Timing("14d", "Loyalty: warn this long before points expire."),
        "loyalty_nudge_min_interval": Timing("7d", "Loyalty: at most one nudge per this period."),
    },
    params={
        "loyalty_tiers": Param(
            {"silver": 1000, "gold": 5000, "platinum": 20000}, "Loyalty tiers by points needed."
        ),
        "loyalty_tier_distance": Param(
            200, "Loyalty: nudge when this many points or fewer short of the next tier."
        ),
        "loyalty_events_per_run": Param(1000, "Loyalty: continue-as-new after this many events."),
    },
)
class Loyalty(Journey):
    """Keeps points and tier; nudges near the next tier, before points expire, and after inactivity."""

    points_expiring = Step(via=("email", "zalo_zns"), stage=Stage.RETENTION)
    tier_nudge = Step(via=("web_push", "email"), stage=Stage.RETENTION)
    winback = Step(via=("email",), stage=Stage.RETENTION)

    def __init__(self) -> None:
        super().__init__()
        self.points = 0
        self.tier: str | None = None
        self.expiring_points = 0
        self.expires_at: datetime | None = None
        self.last_active: datetime | None = None
        self.last_nudge_at: datetime | None = None
        # What each kind of nudge was last given for (a tier name, an expiry time, an activity time),
        # so the same reason never nudges twice.
        self.nudged: dict[str, str] = {}
        self.handled = 0

    async def plan(self, trigger: JourneyEvent | None) -> None:
        if trigger is not None:  # None when this run continues an earlier one
            self.take(trigger)
        while True:
            await self.nudge_if_due()
            if (
                self.handled >= int(self.param("loyalty_events_per_run"))
                or workflow.info().is_continue_as_new_suggested()
            ):
                self.continue_as_new()
            event = await self.wait_for(
                "order_placed", "loyalty_points_changed", timeout=self.until_next_check()
            )
            if event is not None:
                self.take(event)

    # -- the state, from events -----------------------------------------------------------------------------

    def take(self, event: JourneyEvent) -> None:
        props = event.properties
        self.handled += 1
        self.last_active = workflow.now()
        if event.name != "loyalty_points_changed":
            return
        # Properties are untrusted: a value that is not what it should be is ignored, never raised on.
        if as_number(props.get("points"), None) is not None:
            self.points = as_int(props["points"], self.points)
        self.tier = as_text(props.get("tier"), 40) or self.tier_for(self.points)
        if "expiring_points" in props:
            self.expiring_points = max(as_int(props.get("expiring_points")), 0)
            self.expires_at = as_datetime(props.get("points_expire_at"))

    def tiers(self) -> list[tuple[str, int]]:
        return sorted(dict(self.param("loyalty_tiers")).items(), key=lambda item: item[1])

    def tier_for(self, points: int) -> str | None:
        reached = [name for name, needed in self.tiers() if points >= needed]
        return reached[-1] if reached else None

    def next_tier(self) -> tuple[str, int] | None:
        return next(((name, needed) for name, needed in self.tiers() if needed > self.points), None)

    # -- when to nudge --------------------------------------------------------------------------------------

    def due(self) -> list[tuple[Step, str, str]]:
        """The nudges due now, most urgent first: (step, kind, what it is for)."""
        now = workflow.now()
        found: list[tuple[Step, str, str]] = []
        if self.expiring_points > 0 and self.expires_at is not None:
            warn_from = self.expires_at - self.timing("loyalty_expiry_warning")
            marker = self.expires_at.isoformat()
            if warn_from <= now < self.expires_at and self.nudged.get("expiry") != marker:
                found.append((self.points_expiring, "expiry", marker))
        upcoming = self.next_tier()
        if upcoming is not None:
            name, needed = upcoming
            if (
                needed - self.points <= int(self.param("loyalty_tier_distance"))
                and self.nudged.get("tier") != name
            ):
                found.append((self.tier_nudge, "tier", name))
        if self.last_active is not None:
            marker = self.last_active.isoformat()
            inactive = now - self.last_active >= self.timing("loyalty_inactive_after")
            if inactive and self.nudged.get("winback") != marker:
                found.append((self.winback, "winback", marker))
        return found

    def capped_until(self) -> datetime | None:
        """While a nudge was given within `loyalty_nudge_min_interval`, the time the cap lifts."""
        if self.last_nudge_at is None:
            return None
        lifts = self.last_nudge_at + self.timing("loyalty_nudge_min_interval")
        return lifts if lifts > workflow.now() else None

    async def nudge_if_due(self) -> None:
        due = self.due()
        if not due or self.capped_until() is not None:
            return
        step, kind, marker = due[0]
        self.nudged[kind] = marker
        self.last_nudge_at = workflow.now()
        await self.send(step, data=self.snapshot())

    def until_next_check(self) -> timedelta:
        now = workflow.now()
        times: list[datetime] = []
        capped = self.capped_until()
        if capped is not None and self.due():
            times.append(capped)
        if (
            self.expires_at is not None
            and self.expiring_points > 0
            and self.nudged.get("expiry") != (self.expires_at.isoformat())
        ):
            times.append(self.expires_at - self.timing("loyalty_expiry_warning"))
        if self.last_active is not None and self.nudged.get("winback") != self.last_active.isoformat():
            times.append(self.last_active + self.timing("loyalty_inactive_after"))
        future = [t for t in times if t > now]
        return min(future) - now if future else IDLE_CHECK

    # -- what the Temporal UI and continue-as-new see -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        upcoming = self.next_tier()
        return {
            "points": self.points,
            "tier": self.tier,
            "next_tier": upcoming[0] if upcoming else None,
            "points_to_next_tier": upcoming[1] - self.points if upcoming else None,
            "expiring_points": self.expiring_points,
            "points_expire_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    def carry(self) -> dict[str, Any]:
        return {
            **super().carry(),
            "loyalty": {
                "points": self.points,
                "tier": self.tier,
                "expiring_points": self.expiring_points,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "last_active": self.last_active.isoformat() if self.last_active else None,
                "last_nudge_at": self.last_nudge_at.isoformat() if self.last_nudge_at else None,
                "nudged": self.nudged,
            },
        }

    def restore(self, carried: dict[str, Any]) -> None:
        state = carried.get("loyalty", {})
        self.points = int(state.get("points", 0))
        self.tier = state.get("tier")
        self.expiring_points = int(state.get("expiring_points", 0))
        self.nudged = dict(state.get("nudged", {}))
        for name in ("expires_at", "last_active", "last_nudge_at"):
            value = state.get(name)
            setattr(self, name, datetime.fromisoformat(value) if value else None)
