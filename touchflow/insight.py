"""Journey funnels: entered → each step's messages → converted, where customers dropped off, the conversions
and revenue attributed to each step (touchflow.attribution), and each A/B experiment's verdict.

Counted from the journey entries, the delivery records and the events, so every API process answers the same;
the JSON API and the dashboard both call `journey_funnel`, so a figure is the same in both for one period.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise

from touchflow.attribution import Attributed, Conversion, Touchpoint, attribute, conversion_names
from touchflow.models import (
    DeliveryStatus,
    ExperimentResult,
    JourneyFunnel,
    JourneyStatus,
    StageFunnel,
    StepFunnel,
    VariantResult,
)
from touchflow.storage import Store
from touchflow.vocabulary import Stage
from touchflow.workflows.base import JourneySpec

_SENT = {DeliveryStatus.SENT, DeliveryStatus.DELIVERED}
SIGNIFICANCE = 0.05
TEST = (
    "two-proportion z-test (two-sided) of attributed conversions per message sent, between the two "
    f"variants converting best; a winner is called only when p < {SIGNIFICANCE}"
)


def goals_of(registry: Mapping[str, JourneySpec]) -> dict[str, tuple[str, ...]]:
    return {name: spec.goals for name, spec in registry.items()}


def attributed(
    store: Store,
    registry: Mapping[str, JourneySpec],
    window: timedelta,
    since: datetime | None,
    until: datetime | None,
    *,
    journey: str | None = None,
    customer_id: str | None = None,
) -> list[Attributed]:
    """The conversions of [since, until) with the touchpoint each is credited to (all journeys and
    broadcasts, or those that can be `journey`'s or `customer_id`'s)."""
    goals = goals_of(registry)
    rows, touches = store.insight.attribution_inputs(
        conversion_names(goals), window, since, until, journey=journey, customer_id=customer_id
    )
    conversions = [Conversion.from_row(row) for row in rows]
    return attribute(conversions, [Touchpoint(*t) for t in touches], window, goals)


async def journey_funnel(
    store: Store,
    registry: Mapping[str, JourneySpec],
    spec: JourneySpec,
    window: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
) -> JourneyFunnel:
    """A journey's funnel over [since, until): runs entered then, messages made then, conversions then."""
    name = spec.name
    runs, deliveries, engagement, reasons, credited = await asyncio.gather(
        asyncio.to_thread(store.journeys.status_counts, name, since, until),
        asyncio.to_thread(store.deliveries.counts, name, since, until),
        asyncio.to_thread(store.deliveries.engagement_counts, name, since, until),
        asyncio.to_thread(store.deliveries.reasons, name, since, until),
        asyncio.to_thread(attributed, store, registry, window, since, until, journey=name),
    )
    funnel = build_funnel(
        spec, runs, deliveries, engagement, [a for a in credited if a.touchpoint.journey == name], reasons
    )
    return funnel.model_copy(update={"since": since, "until": until})


async def stage_funnel(
    store: Store,
    registry: Mapping[str, JourneySpec],
    window: timedelta,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[StageFunnel]:
    """Every stage in order, over messages made in [since, until) and the conversions of that period."""
    order = [s.value for s in Stage]
    counts, moved, credited = await asyncio.gather(
        asyncio.to_thread(store.insight.stage_counts, since, until),
        asyncio.to_thread(store.insight.moved_on, order, since, until),
        asyncio.to_thread(attributed, store, registry, window, since, until),
    )
    stages = []
    for n, stage in enumerate(order):
        touchpoints, customers = counts.get(stage, (0, 0))
        won = [c for c in credited if c.touchpoint.stage == stage]
        onward = moved[n] if n < len(moved) else None
        stages.append(
            StageFunnel(
                stage=stage,
                touchpoints=touchpoints,
                customers=customers,
                moved_on=onward,
                moved_on_rate=round(onward / customers, 4) if onward is not None and customers else None,
                attributed_conversions=len(won),
                revenue=round(sum(c.conversion.revenue for c in won), 2),
            )
        )
    return stages


def build_funnel(
    spec: JourneySpec,
    runs: dict[str, int],
    deliveries: list[tuple[str, str, str | None, str | None, int]],
    engagement: dict[tuple[str, str | None], tuple[int, int]] | None = None,
    credited: Sequence[Attributed] = (),
    reasons: Sequence[tuple[str, str, str | None, int]] = (),
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
    opened: Counter[tuple[str, str | None]] = Counter()
    clicked: Counter[tuple[str, str | None]] = Counter()
    for (step_name, variant), (o, c) in (engagement or {}).items():
        opened[step_name, variant] += o
        clicked[step_name, variant] += c
        opened[step_name, "*"] += o
        clicked[step_name, "*"] += c
    wins: Counter[tuple[str, str | None]] = Counter()
    money: defaultdict[tuple[str, str | None], float] = defaultdict(float)
    for credit in credited:
        for key in ((credit.touchpoint.step, credit.touchpoint.variant), (credit.touchpoint.step, "*")):
            wins[key] += 1
            money[key] += credit.conversion.revenue
    why: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for step_name, status, reason, count in reasons:
        why[step_name][status][_reason(reason, status)] += count

    steps = []
    stages: Counter[str] = Counter()
    for step in spec.steps:
        counts = by_step[step.name]
        sent = sum(counts[s] for s in _SENT)
        stages[step.stage.value] += sent
        steps.append(
            StepFunnel(
                step=step.name,
                stage=step.stage.value,
                channels=list(step.via),
                reached=sum(counts.values()),
                sent=sent,
                delivered=counts[DeliveryStatus.DELIVERED],
                skipped=counts[DeliveryStatus.SKIPPED],
                failed=counts[DeliveryStatus.FAILED],
                capped=counts[DeliveryStatus.CAPPED],
                deferred=counts[DeliveryStatus.DEFERRED],
                opened=opened[step.name, "*"],
                clicked=clicked[step.name, "*"],
                dropped_before=max(entered - sum(counts.values()), 0),
                by_channel=dict(channels[step.name]),
                by_variant=dict(variants[step.name]),
                attributed_conversions=wins[step.name, "*"],
                revenue=round(money[step.name, "*"], 2),
                reasons={status: dict(found) for status, found in why[step.name].items()},
            )
        )
    for here, after in pairwise(steps):
        here.to_next = round(after.reached / here.reached, 4) if here.reached else None

    experiments = []
    for step in spec.steps:
        if step.experiment is None:
            continue
        results = [
            VariantResult(
                variant=v,
                sent=variants[step.name][v],
                opened=opened[step.name, v],
                clicked=clicked[step.name, v],
                attributed_conversions=wins[step.name, v],
                revenue=round(money[step.name, v], 2),
                conversion_rate=round(wins[step.name, v] / variants[step.name][v], 4)
                if variants[step.name][v]
                else 0.0,
            )
            for v in step.variants
        ]
        experiments.append(verdict(step.experiment, step.name, results))

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
        attributed_conversions=len(credited),
        revenue=round(sum(c.conversion.revenue for c in credited), 2),
        experiments=experiments,
    )


def _reason(reason: str | None, status: str) -> str:
    # A reason is the delivery's recorded error: its first line, short enough for a table cell.
    return reason.splitlines()[0][:120] if reason and reason.strip() else status


def two_proportion_z(wins_a: int, n_a: int, wins_b: int, n_b: int) -> tuple[float, float] | None:
    """(z, two-sided p) of the difference between wins_a/n_a and wins_b/n_b, pooled; None when the test
    cannot be made (an empty arm, or every arm all wins or all losses)."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (wins_a + wins_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return None
    z = (wins_a / n_a - wins_b / n_b) / spread
    return z, math.erfc(abs(z) / math.sqrt(2))


def verdict(experiment: str, step: str, results: list[VariantResult]) -> ExperimentResult:
    """The variants side by side, and whether the best converts significantly better than the next."""
    ranked = sorted(results, key=lambda r: r.conversion_rate, reverse=True)
    outcome = ExperimentResult(experiment=experiment, step=step, variants=results, test=TEST)
    if len(ranked) < 2:
        return outcome
    best, next_best = ranked[0], ranked[1]
    tested = two_proportion_z(
        best.attributed_conversions, best.sent, next_best.attributed_conversions, next_best.sent
    )
    if tested is None:
        return outcome
    z, p = tested
    outcome.z, outcome.p_value = round(z, 3), round(p, 4)
    if p < SIGNIFICANCE:
        outcome.winner = best.variant
    return outcome
