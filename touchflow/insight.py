"""Journey funnels: entered → each step's messages → converted, where customers dropped off, the conversions
and revenue attributed to each step (touchflow.attribution), and each A/B experiment's verdict.

Counted from the journey entries, the delivery records and the events, so every API process answers the same;
the JSON API and the dashboard both call `journey_funnel`, so a figure is the same in both for one period.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

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
_UNSENT = {DeliveryStatus.SKIPPED, DeliveryStatus.FAILED, DeliveryStatus.CAPPED, DeliveryStatus.DEFERRED}
SIGNIFICANCE = 0.05
TEST = (
    "two-proportion z-test (two-sided) of attributed conversions per message sent, between the two "
    f"variants converting best; a winner is called only when p < {SIGNIFICANCE}"
)


def goals_of(registry: Mapping[str, JourneySpec]) -> dict[str, tuple[str, ...]]:
    return {name: spec.goals for name, spec in registry.items()}


# What the figures add up: (journey, step, variant, stage) → (conversions credited, their revenue).
Credits = dict[tuple[str, str, str | None, str | None], tuple[int, float]]


def attributed(
    store: Store,
    registry: Mapping[str, JourneySpec],
    window: timedelta,
    since: datetime | None,
    until: datetime | None,
    *,
    customer_id: str | None = None,
    received_after: datetime | None = None,
) -> list[Attributed]:
    """The conversions of [since, until) (one customer's, or those received after `received_after`),
    each with the touchpoint it is credited to, matched now."""
    goals = goals_of(registry)
    rows, touches = store.insight.attribution_inputs(
        conversion_names(goals), window, since, until, customer_id=customer_id, received_after=received_after
    )
    conversions = [Conversion.from_row(r) for r in rows]
    return attribute(conversions, [Touchpoint(*t) for t in touches], window, goals)


def keep_attributions(
    store: Store, registry: Mapping[str, JourneySpec], window: timedelta
) -> datetime | None:
    """Bring the kept attributions up to the settled events (the store's `keep_attributions`), deciding the
    new ones by the rule; returns how far they go. What `credits` does first, and the insight schedule runs
    so a view after an import has only the last minute to match."""
    goals = goals_of(registry)

    def decide(rows: list[Any], touches: list[Any]) -> list[dict[str, Any]]:
        conversions = [Conversion.from_row(r) for r in rows]
        credited = {
            a.conversion.event_id: a.touchpoint
            for a in attribute(conversions, [Touchpoint(*t) for t in touches], window, goals)
        }
        return [_kept(c, credited.get(c.event_id)) for c in conversions]

    rule = json.dumps([window.total_seconds(), sorted((k, sorted(v)) for k, v in goals.items())])
    return store.insight.keep_attributions(
        hashlib.sha256(rule.encode()).hexdigest(), conversion_names(goals), window, decide
    )


def credits(
    store: Store,
    registry: Mapping[str, JourneySpec],
    window: timedelta,
    since: datetime | None,
    until: datetime | None,
    *,
    journey: str | None = None,
) -> Credits:
    """The conversions of [since, until) credited to each step (of `journey`, or of every journey and
    broadcast), added up. The settled ones are decided once and kept (the store's `keep_attributions`), the
    newer ones matched now: the same rule either way."""
    watermark = keep_attributions(store, registry, window)
    totals: Credits = {}
    for j, step, variant, stage, n, money in store.insight.kept_totals(since, until, journey=journey):
        totals[j, step, variant, stage] = (int(n), float(money or 0.0))
    for credit in attributed(store, registry, window, since, until, received_after=watermark):
        touch = credit.touchpoint
        if journey is None or touch.journey == journey:
            key = (touch.journey, touch.step, touch.variant, touch.stage)
            n, money = totals.get(key, (0, 0.0))
            totals[key] = (n + 1, money + credit.conversion.revenue)
    return totals


def _kept(conversion: Conversion, touch: Touchpoint | None) -> dict[str, Any]:
    """The `Attribution` row of a conversion and the touchpoint credited with it (or none)."""
    row: dict[str, Any] = {
        "event_id": conversion.event_id,
        "customer_id": conversion.customer_id,
        "at": conversion.at,
        "revenue": conversion.revenue,
    }
    for name in ("delivery_id", "journey", "step", "channel", "variant", "stage", "sent_at"):
        row[name] = getattr(touch, name) if touch is not None else None
    return row


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
    (runs, counted), credited = await asyncio.gather(
        asyncio.to_thread(store.rollups.funnel, name, since, until),
        asyncio.to_thread(credits, store, registry, window, since, until, journey=name),
    )
    deliveries = [(r.step, r.status, r.channel, r.variant, r.n) for r in counted]
    engagement: Counter[tuple[str, str | None]] = Counter()
    clicks: Counter[tuple[str, str | None]] = Counter()
    for r in counted:
        engagement[r.step, r.variant] += r.opened
        clicks[r.step, r.variant] += r.clicked
    reasons = [
        (r.step, r.status, r.reason, r.n) for r in counted if r.reason is not None or r.status in _UNSENT
    ]
    funnel = build_funnel(
        spec,
        dict(runs),
        deliveries,
        {key: (engagement[key], clicks[key]) for key in engagement | clicks},
        credited,
        reasons,
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
        asyncio.to_thread(credits, store, registry, window, since, until),
    )
    stages = []
    for n, stage in enumerate(order):
        touchpoints, customers = counts.get(stage, (0, 0))
        won = [v for k, v in credited.items() if k[3] == stage]
        onward = moved[n] if n < len(moved) else None
        stages.append(
            StageFunnel(
                stage=stage,
                touchpoints=touchpoints,
                customers=customers,
                moved_on=onward,
                moved_on_rate=round(onward / customers, 4) if onward is not None and customers else None,
                attributed_conversions=sum(n for n, _ in won),
                revenue=round(sum(money for _, money in won), 2),
            )
        )
    return stages


def build_funnel(
    spec: JourneySpec,
    runs: dict[str, int],
    deliveries: list[tuple[str, str, str | None, str | None, int]],
    engagement: dict[tuple[str, str | None], tuple[int, int]] | None = None,
    credited: Credits | None = None,
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
    for (_, step_name, variant, _), (n, revenue) in (credited or {}).items():
        for key in ((step_name, variant), (step_name, "*")):
            wins[key] += n
            money[key] += revenue
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
        attributed_conversions=sum(n for n, _ in (credited or {}).values()),
        revenue=round(sum(m for _, m in (credited or {}).values()), 2),
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
