"""Journey funnels: entered → each step's messages → converted, and where customers dropped off.

Counted from the journey entries and the delivery records, so every API process answers the same.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from touchflow.models import DeliveryStatus, JourneyFunnel, JourneyStatus, StepFunnel
from touchflow.workflows.base import JourneySpec

_SENT = {DeliveryStatus.SENT, DeliveryStatus.DELIVERED}


def build_funnel(
    spec: JourneySpec,
    runs: dict[str, int],
    deliveries: list[tuple[str, str, str | None, str | None, int]],
    engagement: dict[str, tuple[int, int]] | None = None,
) -> JourneyFunnel:
    entered = sum(runs.values())
    by_step: dict[str, Counter[str]] = defaultdict(Counter)
    channels: dict[str, Counter[str]] = defaultdict(Counter)
    variants: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status, channel, variant, count in deliveries:
        by_step[name][status] += count
        if status in _SENT:
            channels[name][channel or "-"] += count
            if variant:
                variants[name][variant] += count
    steps = []
    stages: Counter[str] = Counter()
    for step in spec.steps:
        counts = by_step[step.name]
        sent = sum(counts[s] for s in _SENT)
        stages[step.stage.value] += sent
        reached = sum(counts.values())
        steps.append(
            StepFunnel(
                step=step.name,
                stage=step.stage.value,
                channels=list(step.via),
                reached=reached,
                sent=sent,
                delivered=counts[DeliveryStatus.DELIVERED],
                skipped=counts[DeliveryStatus.SKIPPED],
                failed=counts[DeliveryStatus.FAILED],
                capped=counts[DeliveryStatus.CAPPED],
                deferred=counts[DeliveryStatus.DEFERRED],
                opened=(engagement or {}).get(step.name, (0, 0))[0],
                clicked=(engagement or {}).get(step.name, (0, 0))[1],
                dropped_before=max(entered - reached, 0),
                by_channel=dict(channels[step.name]),
                by_variant=dict(variants[step.name]),
            )
        )
    converted = runs.get(JourneyStatus.CONVERTED, 0)
    return JourneyFunnel(
        journey=spec.name,
        description=spec.description,
        entered=entered,
        active=runs.get(JourneyStatus.ACTIVE, 0),
        converted=converted,
        exited=runs.get(JourneyStatus.EXITED, 0),
        completed=runs.get(JourneyStatus.COMPLETED, 0),
        conversion_rate=round(converted / entered, 4) if entered else 0.0,
        stages=dict(stages),
        steps=steps,
    )
