"""The public surface for writing journeys: what a shop's own modules import.

    from touchflow.journeys import Journey, JourneyEvent, Reentry, Stage, Step, Timing, journey

    @journey(starts_on="order_placed", goals=("order_placed",), timings={"win_back_delay": "30d"})
    class WinBack(Journey):
        win_back = Step(via=("email", "zalo_zns"), stage=Stage.RETENTION)

        async def plan(self, order: JourneyEvent) -> None:
            if await self.wait("win_back_delay"):
                await self.send(self.win_back, event=order)

Load the module with `TOUCHFLOW_JOURNEYS=shop.journeys`. Your own activities are `@activity.defn` functions
in the same modules (registered with the journeys), called from a plan with `await self.call(fn, arg)`;
`self.issue_coupon(...)` hands out a single-use coupon. `workflow` is Temporal's module, for
`workflow.now()` and `workflow.patched(...)` when you change a journey that has runs in flight.
Event properties are untrusted input: read them with `as_int`, `as_number`, `as_datetime`, `as_text`, which
never raise (a plan that raises on a property stalls the run until the code changes).
Segments sit beside the journeys (docs/segments.md) and are journey triggers:

    vip = segment("vip", where=Event("order_placed", within="365d").sum("total", gte=10_000_000))

    @journey(starts_on=SegmentEntered("vip"), ends_on=(SegmentExited("vip"),))
    class VipWelcome(Journey): ...

Everything here is stable API; what is not re-exported here is touchflow's own business.
"""

from __future__ import annotations

from temporalio import activity, workflow

from touchflow.activities.types import IssueCouponResult, SendStatus, SendStepResult
from touchflow.segments import (
    Attribute,
    Event,
    Property,
    SegmentEntered,
    SegmentExited,
    in_segment,
    lifecycle,
    reachable,
    segment,
)
from touchflow.workflows.base import (
    Journey,
    JourneyEvent,
    JourneyState,
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
    sticky_variant,
)

__all__ = [
    "Attribute",
    "Event",
    "IssueCouponResult",
    "Journey",
    "JourneyEvent",
    "JourneyState",
    "Param",
    "Property",
    "Reentry",
    "SegmentEntered",
    "SegmentExited",
    "SendStatus",
    "SendStepResult",
    "Stage",
    "Step",
    "Timing",
    "activity",
    "as_datetime",
    "as_int",
    "as_number",
    "as_text",
    "in_segment",
    "journey",
    "lifecycle",
    "reachable",
    "segment",
    "sticky_variant",
    "workflow",
]
