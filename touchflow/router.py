"""Routing and relay: stored events become signal-with-start / signal calls on their journeys.

The API stores an event and its outbox entry in one transaction and answers; the relay (running in every API
process) leases outbox entries, hands each event to Temporal and deletes the entry only when Temporal has it.
A crash anywhere in between leaves the entry to be leased again; a repeat reaches the run as the same event
id, which the journey drops. So an accepted event is acted on exactly once.

Ordering across processes: a relay leases whole customers, not single entries (`store.outbox.claim`). A
`relay_leases` row per customer names the relay that holds it and until when; another relay skips that
customer's entries, old and new, until the lease ends, so one customer's events are never relayed by two
relays at once. Within a pass a customer's events go one after another, oldest first; different customers'
go side by side. When one fails, it waits out its back-off and the customer's later events wait behind it.
A pass renews its leases every third of `LEASE` while it runs, so a long pass (a slow Temporal) keeps its
customers; a relay that could not renew in time (its lease was taken over) routes nothing more of those
customers. The leases are released when the pass ends, or lapse if the relay dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from touchflow import tracing
from touchflow.logs import log_context
from touchflow.metrics import ApiMetrics, seconds_since
from touchflow.models import Event, is_anonymous
from touchflow.storage import ClaimedEvent, Store
from touchflow.vocabulary import Reentry
from touchflow.workflows.base import JourneyEvent, JourneyInput, JourneySpec
from touchflow.workflows.broadcast import BroadcastInput, BroadcastWorkflow
from touchflow.workflows.broadcast import workflow_id as broadcast_workflow_id

log = logging.getLogger(__name__)

# How long a relay owns the customers it leased before another may take them over.
LEASE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(seconds=30)
_SERVER_DOWN = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


class Router:
    def __init__(
        self,
        client: Client,
        store: Store,
        task_queue: str,
        registry: Mapping[str, JourneySpec],
    ) -> None:
        self.client = client
        self.store = store
        self.task_queue = task_queue
        self.registry = registry

    async def route(self, event: Event) -> None:
        """Hand one event to every journey it starts, feeds or ends. Raises when Temporal is unreachable."""
        journey_event = JourneyEvent(
            id=event.id, name=event.name, properties=event.properties, occurred_at=event.occurred_at
        )
        started: set[str] = set()
        if any(event.name in spec.starts_on for spec in self.registry.values()):
            # A relay retry of an event that started a run which has closed since (a journey that may run
            # again) would start a second run: the store knows which runs this event started.
            started = await asyncio.to_thread(self.store.journeys.runs_started_by, event.id)
        for spec in self.registry.values():
            if event.name in spec.starts_on:
                await self._start_or_feed(spec, event, journey_event, started)
            elif event.name in spec.ends_on or event.name in spec.listens_to:
                await self._feed_running(spec, event, journey_event)

    async def start_broadcast(
        self, broadcast_id: str, send_at: datetime | None, heartbeat: timedelta
    ) -> None:
        """Start the one workflow that sends a stored broadcast (`touchflow.workflows.broadcast`)."""
        await self.client.start_workflow(
            BroadcastWorkflow.run,
            BroadcastInput(broadcast_id, send_at, heartbeat.total_seconds()),
            id=broadcast_workflow_id(broadcast_id),
            task_queue=self.task_queue,
        )

    async def signal_broadcast(self, broadcast_id: str, signal: str) -> None:
        """`pause`, `resume` or `cancel` a broadcast's workflow."""
        await self.client.get_workflow_handle(broadcast_workflow_id(broadcast_id)).signal(signal)

    async def _start_or_feed(
        self, spec: JourneySpec, event: Event, journey_event: JourneyEvent, started: set[str]
    ) -> None:
        entry_key = spec.entry_key(event.properties)
        if spec.key is not None and entry_key is None:
            log.warning(
                "event lacks the journey's key; not started",
                extra={"journey": spec.name, "event_id": event.id, "key": spec.key},
            )
            return
        workflow_id = spec.workflow_id(event.customer_id, entry_key)
        if merged := await self._merged_runs(spec, event.customer_id, entry_key):
            # The customer's run began while they were an anonymous visitor: the event feeds that run
            # (a cart updated after login is the cart abandoned before it), never a second one; and a
            # journey that runs once has run if the visitor's run went through.
            if await self._signal(merged, journey_event):
                return
            if spec.reentry is Reentry.ONCE and await self._any_ran(merged):
                log.info(
                    "journey ran while the customer was an anonymous visitor",
                    extra={"journey": spec.name, "event_id": event.id},
                )
                return
        if workflow_id in started:
            # Open, the run has the event already (it started with it); closed, it must not start again.
            log.info("event already started this journey", extra={"workflow_id": workflow_id})
            return
        try:
            await self.client.start_workflow(
                spec.name,
                JourneyInput(customer_id=event.customer_id, entry_key=entry_key),
                id=workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=spec.id_reuse_policy,
                id_conflict_policy=spec.id_conflict_policy,
                start_signal="on_event",
                start_signal_args=[journey_event],
                search_attributes=spec.search_attributes(event.customer_id),
                static_summary=f"{spec.name} · customer {event.customer_id}",
                static_details=spec.description,
            )
        except WorkflowAlreadyStartedError:
            # A journey that runs once per customer (or key) has run: nothing more to do. (The SDK turns
            # the server's ALREADY_EXISTS into this error; the RPCError branch covers servers that do not.)
            log.info("journey already ran", extra={"workflow_id": workflow_id})
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                log.info("journey already ran", extra={"workflow_id": workflow_id})
                return
            raise

    async def _feed_running(self, spec: JourneySpec, event: Event, journey_event: JourneyEvent) -> None:
        entry_key = spec.entry_key(event.properties)
        if spec.key is None or entry_key is not None:
            workflow_id = spec.workflow_id(event.customer_id, entry_key)
            merged = await self._merged_runs(spec, event.customer_id, entry_key)
            targets = [workflow_id, *merged]
        else:
            # An exit without the key (an order with no cart id) reaches every open entry of the customer.
            entries = await asyncio.to_thread(
                self.store.journeys.active_entries, spec.name, event.customer_id
            )
            targets = sorted({entry.workflow_id for entry in entries})
        await self._signal(targets, journey_event)

    async def _signal(self, workflow_ids: Iterable[str], journey_event: JourneyEvent) -> int:
        """Signal each run that is open; how many were."""
        signalled = 0
        for workflow_id in workflow_ids:
            try:
                await self.client.get_workflow_handle(workflow_id).signal("on_event", journey_event)
                signalled += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                # No run open for this customer: the event is stored, and that is all it needs.
        return signalled

    async def _any_ran(self, workflow_ids: Iterable[str]) -> bool:
        """Whether any of these workflow ids has a run (closed: `_signal` found none open)."""
        for workflow_id in workflow_ids:
            try:
                await self.client.get_workflow_handle(workflow_id).describe()
                return True
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return False

    async def _merged_runs(self, spec: JourneySpec, customer_id: str, entry_key: str | None) -> list[str]:
        """The workflow ids the journey's runs (for this entry key) have under the anonymous ids merged into
        the customer: a run begun while they were a visitor keeps its id, entered yet or not, open or closed.
        Derived from `identities`, not from journey entries (written by a run's first activity, so a run
        not yet entered would be missed). Only a known customer has any."""
        if is_anonymous(customer_id):
            return []
        anonymous = await asyncio.to_thread(self.store.identities.anonymous_ids_of, customer_id)
        return [spec.workflow_id(anonymous_id, entry_key) for anonymous_id in anonymous]

    async def erase_customer_journeys(
        self, customer_id: str, reason: str, workflow_ids: Iterable[str] = ()
    ) -> tuple[int, int]:
        """End every running journey of a customer and delete every run's history (erasure).

        Runs are found by the `CustomerId` search attribute (open and closed, every run of a chain) and by
        `workflow_ids` (the store's entries: visibility can trail by a moment). Returns (ended, deleted). On a
        server that cannot delete histories (the time-skipping test server) runs are only ended.
        """
        query = f'CustomerId = "{_quote(customer_id)}"'
        runs: dict[tuple[str, str | None], bool] = {}  # (workflow id, run id) -> running
        try:
            async for execution in self.client.list_workflows(query):
                runs[(execution.id, execution.run_id)] = execution.status == WorkflowExecutionStatus.RUNNING
        except RPCError as exc:
            if exc.status != RPCStatusCode.UNIMPLEMENTED:  # a server without visibility (test server)
                raise
        known = {workflow_id for workflow_id, _ in runs}
        for workflow_id in set(workflow_ids) - known:
            runs[(workflow_id, None)] = True  # the current run, whatever its state
        ended = 0
        for workflow_id, run_id in sorted(runs, key=lambda run: (run[0], run[1] or "")):
            if not runs[(workflow_id, run_id)]:
                continue
            try:
                await self.client.get_workflow_handle(workflow_id, run_id=run_id).terminate(reason=reason)
                ended += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        deleted = 0
        for workflow_id, run_id in sorted(runs, key=lambda run: (run[0], run[1] or "")):
            request = DeleteWorkflowExecutionRequest(
                namespace=self.client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
            )
            try:
                await self.client.workflow_service.delete_workflow_execution(request)
                deleted += 1
            except RPCError as exc:
                if exc.status == RPCStatusCode.UNIMPLEMENTED:
                    break  # the test server keeps histories in memory only, for the length of a test
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return ended, deleted


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Relay:
    """Drains the outbox into Temporal; several relays (API processes) may run against one store.

    It connects to Temporal lazily, so the API accepts events while Temporal is still down.
    """

    def __init__(
        self,
        store: Store,
        connect: Callable[[], Awaitable[Client]],
        task_queue: str,
        interval: timedelta,
        batch_size: int,
        registry: Mapping[str, JourneySpec],
        *,
        lease: timedelta = LEASE,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.connect = connect
        self.task_queue = task_queue
        self.interval = interval.total_seconds()
        self.batch_size = batch_size
        self.registry = registry
        self.lease = lease
        # Names this relay in `relay_leases`: which process holds a customer, for whoever looks.
        self.holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._router: Router | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New entries are waiting: relay now instead of at the next tick."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                busy = await self.relay_once()
            except Exception as exc:
                log.warning("relay pass failed: %s: %s", type(exc).__name__, exc)
                busy = False
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()

    async def router(self) -> Router:
        if self._router is None:
            client = await self.connect()
            self._router = Router(client, self.store, self.task_queue, self.registry)
        return self._router

    async def client(self) -> Client:
        """The relay's Temporal client (connected on first use)."""
        return (await self.router()).client

    async def relay_once(self) -> bool:
        """One pass; True when it relayed a full batch (there may be more)."""
        if await asyncio.to_thread(self.store.outbox.size) == 0:
            return False
        router = await self.router()
        claimed = await asyncio.to_thread(self.store.outbox.claim, self.batch_size, self.lease, self.holder)
        if not claimed:
            return False
        customers = sorted({item.event.customer_id for item in claimed})
        done: list[int] = []
        lost: set[str] = set()
        renewing = asyncio.create_task(self._renew_leases(customers, lost))
        try:
            # An event erased since it was claimed (its customer was deleted) starts nothing.
            present = await asyncio.to_thread(self.store.events.existing_ids, [c.event.id for c in claimed])
            done.extend(item.outbox_id for item in claimed if item.event.id not in present)
            relayed = [item for item in claimed if item.event.id in present]
            by_customer: dict[str, list[ClaimedEvent]] = {}
            for item in relayed:
                by_customer.setdefault(item.event.customer_id, []).append(item)
            server_down = asyncio.Event()

            async def relay_customer(items: list[ClaimedEvent]) -> None:
                # In order, one at a time. The first that fails waits out its back-off and the rest stay
                # where they are: the customer is not leased again until that one is due.
                for item in items:
                    if item.event.customer_id in lost:
                        return  # another relay holds this customer now: it relays the rest
                    if server_down.is_set():
                        await self._back_off(item, "temporal unavailable")
                        return
                    try:
                        with (
                            log_context(event_id=item.event.id),
                            tracing.span(
                                "relay event",
                                parent=item.trace_context,
                                attributes={
                                    "touchflow.event_id": item.event.id,
                                    "touchflow.event_name": item.event.name,
                                },
                            ),
                        ):
                            await router.route(item.event)
                    except RPCError as exc:
                        if exc.status in _SERVER_DOWN:
                            # Temporal is away: hand the rest back at once, not one timeout each.
                            server_down.set()
                            await self._back_off(item, f"temporal unavailable: {exc.message}")
                            return
                        await self._back_off(item, f"temporal: {exc.status!s} {exc.message}")
                        return
                    except Exception as exc:
                        await self._back_off(item, f"{type(exc).__name__}: {exc}")
                        return
                    done.append(item.outbox_id)
                    if self.metrics is not None:
                        self.metrics.relayed.labels("relayed").inc()
                        self.metrics.relay_lag.observe(seconds_since(item.event.received_at) or 0.0)

            await asyncio.gather(*(relay_customer(items) for items in by_customer.values()))
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await asyncio.to_thread(self.store.outbox.finish, done, self.holder, customers)
        await self._sweep_erased(router, relayed)
        return len(claimed) == self.batch_size and len(done) == len(claimed)

    async def _renew_leases(self, customers: list[str], lost: set[str]) -> None:
        """While the pass runs: renew its leases every third of the lease; note the customers it lost."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                held = await asyncio.to_thread(
                    self.store.outbox.extend_leases, self.holder, customers, self.lease
                )
            except Exception as exc:  # the database away for a moment: the next renewal may still be in time
                log.warning("relay lease renewal failed: %s: %s", type(exc).__name__, exc)
                continue
            gone = set(customers) - held
            if gone - lost:
                log.warning("relay lost customers' leases mid-pass", extra={"customers": len(gone - lost)})
            lost |= gone

    async def _sweep_erased(self, router: Router, relayed: list[ClaimedEvent]) -> None:
        """A customer erased while their events were being relayed: the runs just started are ended and
        deleted here (the erasure itself swept Temporal before they existed)."""
        if not relayed:
            return
        present = await asyncio.to_thread(self.store.events.existing_ids, [c.event.id for c in relayed])
        for customer_id in sorted({c.event.customer_id for c in relayed if c.event.id not in present}):
            log.info("sweeping the journeys of a customer erased mid-relay")
            await router.erase_customer_journeys(customer_id, reason="customer erased")

    async def _back_off(self, item: ClaimedEvent, error: str) -> None:
        if self.metrics is not None:
            self.metrics.relayed.labels("retry").inc()
        delay = min(timedelta(seconds=2 ** min(item.attempts, 12) / 4), MAX_BACKOFF)
        log.warning(
            "relay will retry",
            extra={"event_id": item.event.id, "attempts": item.attempts, "retry_in": str(delay)},
        )
        await asyncio.to_thread(self.store.outbox.retry, item.outbox_id, error, delay, self.holder)
