"""Prometheus metrics (prometheus-client): what the API and each worker count, on a registry of their own.

Every label takes values from a bounded set, so a shop sending a million event names or broadcasts cannot
grow the series without end: event names not in the journey registry fold into `other`, a broadcast's
deliveries count under the journey `broadcast`. docs/operations.md says what each metric means when it moves.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from touchflow.models import utcnow

OTHER = "other"
BROADCAST = "broadcast"

# Seconds: an HTTP answer or a provider call (milliseconds to a slow provider's timeout).
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds from an event to what follows it: the relay's hand-off, and a send (which may wait days).
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)


def seconds_since(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return max(0.0, (utcnow() - moment).total_seconds())


class ApiMetrics:
    """The API's metrics: events in by name and outcome, the relay, HTTP latency by route template."""

    def __init__(self, known_events: Collection[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.known_events = frozenset(known_events)
        self.events = Counter(
            "touchflow_events",
            "Events received, by name (names no journey knows fold into `other`) and status "
            "(accepted, duplicate, conflict, rejected).",
            ["name", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "touchflow_http_request_duration_seconds",
            "HTTP requests by method, route template (not the raw path) and status code.",
            ["method", "route", "status"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.relay_lag = Histogram(
            "touchflow_relay_lag_seconds",
            "From an event received to the relay handing it to Temporal.",
            buckets=SLOW_BUCKETS,
            registry=self.registry,
        )
        self.relayed = Counter(
            "touchflow_relay_events",
            "Outbox entries the relay handled, by outcome (relayed, retry).",
            ["outcome"],
            registry=self.registry,
        )

    def event_name(self, name: object) -> str:
        return name if isinstance(name, str) and name in self.known_events else OTHER

    def count_event(self, name: object, status: str) -> None:
        self.events.labels(self.event_name(name), status).inc()

    def watch_outbox(self, backlog: Callable[[], tuple[int, datetime | None]]) -> None:
        """Read the outbox's depth and its oldest event's age at every scrape (one query)."""
        self.registry.register(_OutboxCollector(backlog))


class _OutboxCollector(Collector):
    def __init__(self, backlog: Callable[[], tuple[int, datetime | None]]) -> None:
        self.backlog = backlog

    def collect(self) -> Iterable[Metric]:
        try:
            depth, oldest = self.backlog()
        except Exception:  # the database away: /readyz says so; a scrape still answers the rest
            return
        yield GaugeMetricFamily(
            "touchflow_outbox_depth", "Accepted events still waiting for the relay.", value=depth
        )
        yield GaugeMetricFamily(
            "touchflow_outbox_oldest_seconds",
            "Age of the oldest event waiting for the relay (0 when none waits): the relay's lag.",
            value=seconds_since(oldest) or 0.0,
        )


class WorkerMetrics:
    """A worker's metrics: deliveries by journey, step, channel, outcome; send and event-to-send latency."""

    def __init__(self, journeys: Collection[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.journeys = frozenset(journeys)
        self.deliveries = Counter(
            "touchflow_deliveries",
            "Steps delivered, by journey, step, channel (`none` when no channel sent) and outcome "
            "(sent, skipped, failed, capped, deferred).",
            ["journey", "step", "channel", "outcome"],
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "touchflow_send_duration_seconds",
            "One provider call (SMTP, push service, Zalo, ...) by channel and result (ok, retryable, "
            "permanent).",
            ["channel", "result"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.event_to_send = Histogram(
            "touchflow_event_to_send_seconds",
            "From the event a step answers (its trigger or the event it renders) to the message sent, "
            "waits included.",
            ["journey", "step"],
            buckets=SLOW_BUCKETS,
            registry=self.registry,
        )

    def journey_step(self, journey: str, step: str) -> tuple[str, str]:
        """Bounded labels: a broadcast's deliveries (journey `broadcast:<id>`) count as one journey."""
        if journey in self.journeys:
            return journey, step
        if journey.startswith(f"{BROADCAST}:"):
            return BROADCAST, BROADCAST
        return OTHER, OTHER
