"""A journey for channel tests: `probe` sends one step over the channels its trigger names.

    await journeys.post("c1", "probe", {"via": ["zalo_zns", "email"]})

Its templates live in tests/support/templates/probe/ (the harness points TOUCHFLOW_TEMPLATES_DIR there).
"""

from __future__ import annotations

from touchflow.workflows.base import Journey, JourneyEvent, Reentry, Stage, Step, journey


@journey(starts_on="probe", reentry=Reentry.ONE_AT_A_TIME, key="probe_id")
class Probe(Journey):
    """Sends one `probe` step over the channels named in the trigger's `via`."""

    async def plan(self, trigger: JourneyEvent) -> None:
        step = Step(
            via=tuple(trigger.properties.get("via", ("console",))),
            stage=Stage(trigger.properties.get("stage", "awareness")),
            transactional=bool(trigger.properties.get("transactional", False)),
            name="probe",
        )
        await self.send(step, event=trigger)
