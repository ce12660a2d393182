"""The activities every journey uses: enter and leave a journey, and deliver a step.

`deliver_step` is the one place a message goes out: it re-reads the truth, renders, tries the step's channels
in order and records every attempt on a delivery row keyed by the step's business key, so a retried or
repeated activity never sends twice.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from touchflow import tracing
from touchflow.activities.coalesce import Coalesced
from touchflow.activities.directory import StoreDirectory
from touchflow.activities.policy import (
    MARKETING,
    PASSIVE_CHANNELS,
    TRANSACTIONAL,
    QuietHours,
    consent_refusal,
    parse_caps,
)
from touchflow.activities.types import (
    EnterJourneyInput,
    EnterJourneyResult,
    LeaveJourneyInput,
    SendStatus,
    SendStepInput,
    SendStepResult,
)
from touchflow.channels import REGISTRY as CHANNELS
from touchflow.channels import (
    Channel,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    Receipt,
    Recipient,
    RetryableDeliveryError,
)
from touchflow.channels.zalo_zns import template_id_for
from touchflow.logs import log_context
from touchflow.metrics import WorkerMetrics, seconds_since
from touchflow.models import Customer, Delivery, DeliveryStatus, Event, JourneyStatus, is_anonymous, utcnow
from touchflow.rendering import Rendered, Renderer, TemplateBroken, TemplateUnusable
from touchflow.settings import Settings
from touchflow.signing import Purpose, Signer
from touchflow.storage import Store
from touchflow.urls import LINK_DOMAINS, host_of, link_allowed, safe_link
from touchflow.vocabulary import Reentry

log = logging.getLogger(__name__)

_FINAL = {
    DeliveryStatus.CAPPED,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.FAILED,
}
_TO_RESULT = {
    DeliveryStatus.CAPPED: SendStatus.CAPPED,
    DeliveryStatus.DEFERRED: SendStatus.DEFERRED,
    DeliveryStatus.SENT: SendStatus.SENT,
    DeliveryStatus.DELIVERED: SendStatus.SENT,
    DeliveryStatus.SKIPPED: SendStatus.SKIPPED,
    DeliveryStatus.FAILED: SendStatus.FAILED,
}


# A provider asking us to wait longer than this (a night window) defers the step: the journey sleeps
# durably and asks again, instead of an activity retry holding the slot.
DEFER_AFTER = timedelta(minutes=5)
# Channels that reach only a known customer: an anonymous visitor gets web push and onsite only.
_KNOWN_ONLY = frozenset({"email", "zalo_zns"})


@dataclass
class _Outcome:
    status: DeliveryStatus
    reason: str | None = None
    channel: str | None = None
    provider_id: str | None = None
    retry_at: datetime | None = None
    ended_by: Event | None = None
    rendered: Rendered | None = None
    answers: Event | None = None  # the event the step answers: event-to-send latency counts from it


@dataclass
class _Tally:
    """What the step's channels came to so far, for the outcome when none of them sent it."""

    delivery: Delivery
    reasons: list[str] = field(default_factory=list)
    permanent: bool = False
    capped: bool = False
    rendered: Rendered | None = None  # the last rendering: the delivery records its language
    # Channels an earlier attempt found permanently unusable (an activity retried for a later channel).
    failed_before: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.failed_before = {
            str(a.get("channel")): a.get("reason") or ""
            for a in self.delivery.attempts
            if a.get("outcome") in ("permanent", "no_template")
        }

    def outcome(self) -> _Outcome:
        if (
            self.capped
            and not self.permanent
            and all(a.get("outcome") != "sent" for a in self.delivery.attempts)
        ):
            return _Outcome(DeliveryStatus.CAPPED, "; ".join(self.reasons), rendered=self.rendered)
        status = DeliveryStatus.FAILED if self.permanent else DeliveryStatus.SKIPPED
        reason = "; ".join(self.reasons) or "no channel could reach the customer"
        return _Outcome(status, reason, rendered=self.rendered)


class MessageSource(Protocol):
    """What a message says on a channel, for a customer's locale: the step's templates, or inline content."""

    def __call__(self, channel: str, locale: str | None, context: dict[str, Any], /) -> Rendered: ...


class JourneyValues(Protocol):
    """The journeys' settings in force (the registry): what a run reads once, when it enters."""

    def timings_for(self, journey: str) -> dict[str, float]: ...

    def params_for(self, journey: str) -> dict[str, Any]: ...


class JourneyActivities:
    def __init__(
        self,
        store: Store,
        channels: dict[str, Channel],
        renderer: Renderer,
        settings: Settings,
        journeys: JourneyValues,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or WorkerMetrics(())
        # How channels find a customer's push subscriptions and suppressions (they know no database).
        self.directory = StoreDirectory(store)
        self.journeys = journeys
        self.channels = channels
        self.renderer = renderer
        self.settings = settings
        self.signer = Signer.from_settings(settings)
        self.quiet_hours = QuietHours.parse(settings.quiet_hours)
        self.caps = parse_caps(settings.frequency_caps)
        # Leases taken and results recorded at the same moment share a transaction (`Coalesced`).
        deliveries = store.deliveries
        self._take_lease = Coalesced(
            partial(deliveries.start_sending_many, lease=settings.delivery_attempt_timeout)
        )
        self._record = Coalesced(deliveries.finish_sending_many)
        self._sent = [
            Coalesced(partial(deliveries.marketing_sent_counts, window=cap.window, channel=cap.channel))
            for cap in self.caps
        ]

    async def aclose(self) -> None:
        """Close what the channels keep open between sends (a worker stopping)."""
        for channel in self.channels.values():
            await channel.aclose()

    # -- entering and leaving -------------------------------------------------------------------------------

    async def _current_id(self, customer_id: str) -> str:
        """Who a run's customer is now: a run that began for an anonymous visitor carries on as the known
        customer they were merged into (`store.identities`); any other id is as given."""
        if not is_anonymous(customer_id):
            return customer_id
        return await asyncio.to_thread(self.store.identities.known_as, customer_id) or customer_id

    @activity.defn(name="enter_journey")
    async def enter_journey(self, input: EnterJourneyInput) -> EnterJourneyResult:
        input = replace(input, customer_id=await self._current_id(input.customer_id))
        entry, earlier = await asyncio.to_thread(
            self.store.journeys.enter,
            run_id=input.run_id,
            workflow_id=input.workflow_id,
            journey=input.journey,
            customer_id=input.customer_id,
            entry_key=input.entry_key,
            trigger_event_id=input.trigger_event_id,
        )
        reason = None
        if input.trigger_event_id and any(e.trigger_event_id == input.trigger_event_id for e in earlier):
            # The router checks this before it starts a run; a retry racing that check ends here.
            reason = "an earlier run started on this event"
        elif earlier and input.reentry is Reentry.ONCE:
            reason = "already went through this journey"
        elif earlier and input.reentry is Reentry.COOLDOWN and input.cooldown_seconds is not None:
            since = entry.entered_at - earlier[0].entered_at
            if since < timedelta(seconds=input.cooldown_seconds):
                reason = f"re-entry cooldown: last entry {since} ago"
        if reason is not None:
            await asyncio.to_thread(
                self.store.journeys.leave, input.run_id, JourneyStatus.EXITED, "not admitted"
            )
        return EnterJourneyResult(
            admitted=reason is None,
            entered_at=entry.entered_at,
            entry_id=entry.id or 0,
            reason=reason,
            timings={
                **self.journeys.timings_for(input.journey),
                "delivery_attempt_timeout": self.settings.delivery_attempt_timeout.total_seconds(),
            },
            params=self.journeys.params_for(input.journey),
        )

    @activity.defn(name="leave_journey")
    async def leave_journey(self, input: LeaveJourneyInput) -> None:
        await asyncio.to_thread(self.store.journeys.leave, input.run_id, input.status, input.ended_by)

    # -- delivering -----------------------------------------------------------------------------------------

    @activity.defn(name="deliver_step")
    async def deliver_step(self, input: SendStepInput) -> SendStepResult:
        with log_context(event_id=input.event_id or input.trigger_event_id, workflow_id=input.workflow_id):
            return await self.deliver(input)

    async def deliver(
        self,
        input: SendStepInput,
        source: MessageSource | None = None,
        *,
        claimed: Delivery | None = None,
        customer: Customer | None = None,
    ) -> SendStepResult:
        """Deliver one message once per `input.key`: the pipeline every sender shares (a journey's step, a
        broadcast's recipient). `source` gives the message for a channel; by default the step's templates.

        A sender of many (a broadcast's batch) claims their rows and reads their profiles in one query each
        and hands them in (`claimed`, `customer`): the row is the one `claim` would give, the profile as
        fresh as the batch.
        """
        # Consent, caps, exits and the delivery row are the customer's as they are now.
        input = replace(input, customer_id=await self._current_id(input.customer_id))
        delivery = claimed
        if delivery is None:
            delivery = await asyncio.to_thread(self.store.deliveries.claim, self.delivery_row(input))
        assert delivery.id is not None
        if delivery.status in _FINAL:
            # An earlier attempt finished this step: answer as it did, send nothing.
            return self._result(delivery)
        lease = self.settings.delivery_attempt_timeout
        token, interrupted = await self._take_lease(delivery.id)
        if token is None:
            # Another attempt (a retry racing a slow one) is sending this step right now.
            raise ApplicationError("another attempt is sending this step", type="StepBeingSent")
        if interrupted:
            # A worker died mid-send: the provider may have taken it. Sending again reuses the step's
            # provider handle (Message-ID, tracking_id), which is how the two are reconciled.
            delivery.attempts.append({"outcome": "interrupted", "at": _now()})
        # While a slow provider takes its time, the attempt renews its lease: it stays the one sending.
        # A journey's delivery is a local activity, alive as long as its workflow task (which the SDK keeps
        # open); a regular activity (a broadcast's batch) heartbeats, and times out after `lease` without.
        local = activity.in_activity() and activity.info().is_local
        sending = asyncio.ensure_future(
            self._attempt(input, delivery, source or self._templates(input), customer)
        )
        keepers = [asyncio.create_task(self._keep_lease(delivery.id, token, lease, sending))]
        if activity.in_activity() and not local:
            keepers.append(asyncio.create_task(self._heartbeat(lease)))
        try:
            try:
                outcome = await (asyncio.shield(sending) if local else sending)
            except asyncio.CancelledError:
                if not local or sending.done():
                    raise
                # A local attempt is cancelled when its run leaves the worker's cache (a workflow task
                # failed, or the worker stops): the provider call is let finish and its result recorded, so
                # the run's next attempt finds the step done instead of sending it again.
                outcome = await sending
        except asyncio.CancelledError:
            # Cancelled mid-send (timed out, or the worker is stopping): the provider may have the message.
            # The lease is left expired, not cleared, so the next attempt knows it follows an interrupted one.
            await asyncio.to_thread(
                self.store.deliveries.finish_sending,
                delivery.id,
                token,
                attempts=delivery.attempts,
                sending_until=utcnow(),
            )
            raise
        except BaseException:
            await asyncio.to_thread(
                self.store.deliveries.finish_sending, delivery.id, token, attempts=delivery.attempts
            )
            raise
        finally:
            for keeper in keepers:
                keeper.cancel()
        values: dict[str, Any] = {
            "status": outcome.status,
            "channel": outcome.channel,
            "provider_id": outcome.provider_id,
            "error": outcome.reason,
            "attempts": delivery.attempts,
            "retry_at": outcome.retry_at,
            "locale": outcome.rendered.language if outcome.rendered else None,
            "locale_fallback": outcome.rendered.fallback if outcome.rendered else False,
        }
        if outcome.status == DeliveryStatus.SENT:
            values["sent_at"] = utcnow()
        recorded = await self._record((delivery.id, token, values))
        if recorded is None:
            # A later attempt took the lease (this one was presumed dead): its record stands, not this one's.
            log.warning("a superseded attempt finished", extra={"delivery_id": delivery.id})
            raise ApplicationError("a later attempt owns this step", type="StepBeingSent")
        delivery = recorded
        self._count(input, outcome)
        log.info(
            "step delivered",
            extra={
                "journey": input.journey,
                "step": input.step,
                "delivery_id": delivery.id,
                "status": str(outcome.status),
                "channel": outcome.channel,
            },
        )
        result = self._result(delivery)
        if outcome.ended_by is not None:
            result.ended_by, result.ended_by_event_id = outcome.ended_by.name, outcome.ended_by.id
        return result

    def _count(self, input: SendStepInput, outcome: _Outcome) -> None:
        journey, step = self.metrics.journey_step(input.journey, input.step)
        status = str(outcome.status)
        self.metrics.deliveries.labels(journey, step, outcome.channel or "none", status).inc()
        if outcome.status == DeliveryStatus.SENT and outcome.answers is not None:
            latency = seconds_since(outcome.answers.received_at) or 0.0
            self.metrics.event_to_send.labels(journey, step).observe(latency)

    @staticmethod
    def delivery_row(input: SendStepInput) -> Delivery:
        """The delivery row a send claims for its business key."""
        return Delivery(
            key=input.key,
            journey=input.journey,
            step=input.step,
            customer_id=input.customer_id,
            workflow_id=input.workflow_id,
            stage=input.stage,
            variant=input.variant,
            marketing=not input.transactional,
        )

    @staticmethod
    async def _heartbeat(lease: timedelta) -> None:
        """Tell Temporal the attempt is alive, four times per attempt timeout (no database in the way, so
        a busy store cannot make a live attempt look dead)."""
        while True:
            await asyncio.sleep(lease.total_seconds() / 4)
            activity.heartbeat()

    async def _keep_lease(
        self, delivery_id: int, token: int, lease: timedelta, sender: asyncio.Future[Any]
    ) -> None:
        """Renew the send lease a few times per `lease` until cancelled; if the lease was lost (a later
        attempt holds it), stop the sending attempt rather than send twice."""
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            if not await asyncio.to_thread(self.store.deliveries.renew_lease, delivery_id, token, lease):
                sender.cancel()
                return

    # -- the pipeline: guard, consent and caps, quiet hours, then per channel: usable, recipients, render,
    # send, record. Each stage answers an outcome that ends the step, or None to go on.

    def _templates(self, input: SendStepInput) -> MessageSource:
        """The step's template files: `templates/<journey>/<step>.<channel>.<locale>.<ext>`."""
        return partial(self.renderer.render, input.journey, input.step)

    async def _attempt(
        self, input: SendStepInput, delivery: Delivery, source: MessageSource, known: Customer | None
    ) -> _Outcome:
        customer = known or await asyncio.to_thread(self.store.customers.get, input.customer_id)
        if customer is None:
            return _Outcome(DeliveryStatus.SKIPPED, "customer no longer exists")
        # The event the step renders, else the run's trigger: what the step answers (and the guard's trigger).
        answers = input.event_id or input.trigger_event_id
        event = await asyncio.to_thread(self.store.events.get, answers) if answers else None
        # The guard needs the run's trigger: the event already read, when the step answers the trigger.
        ended = await self._guard(input, event if answers == input.trigger_event_id else None)
        if ended is not None:
            return ended
        if not input.transactional:
            held = await self._marketing_hold(input, customer)
            if held is not None:
                return held
        context = await self._context(input, customer, delivery.id or 0, event if input.event_id else None)
        tally = _Tally(delivery)
        for name in input.channels:
            sent = await self._over_channel(input, delivery, customer, context, name, tally, source)
            if sent is not None:
                sent.answers = event
                return sent
        return tally.outcome()

    async def _guard(self, input: SendStepInput, trigger: Event | None) -> _Outcome | None:
        """The journey's exit or goal, found in the store since the run began (not the trigger itself);
        `trigger` is the run's trigger when the caller has read it already."""
        if not input.exit_on:
            return None
        if trigger is None and input.trigger_event_id is not None:
            trigger = await asyncio.to_thread(self.store.events.get, input.trigger_event_id)
        goal = await asyncio.to_thread(
            partial(
                self.store.events.first_since,
                input.customer_id,
                input.exit_on,
                input.entered_at,
                input.exit_match,
                after=trigger,
            )
        )
        if goal is None:
            return None
        return _Outcome(DeliveryStatus.SKIPPED, f"journey ended by {goal.name}", ended_by=goal)

    async def _over_channel(
        self,
        input: SendStepInput,
        delivery: Delivery,
        customer: Customer,
        context: dict[str, Any],
        name: str,
        tally: _Tally,
        source: MessageSource,
    ) -> _Outcome | None:
        """One channel of the step: usable, recipients, render, send. An outcome when the step is done."""
        channel = await self._usable(input, delivery, customer, name, tally)
        if channel is None:
            return None
        recipients = await channel.recipients(customer, self.directory)
        if not recipients:
            reason = f"{name}: customer has no usable {channel.reaches.value}"
            delivery.attempts.append({"channel": name, "outcome": "unreachable", "reason": reason})
            tally.reasons.append(reason)
            return None
        rendered = self._render(input, delivery, customer, context, channel, tally, source)
        if rendered is None:
            return None
        message = OutboundMessage(
            key=input.key,
            address=recipients[0].address,
            content={part: value for part, value in rendered.parts.items() if channel.accepts(part)},
            marketing=not input.transactional,
            unsubscribe_url=context["unsubscribe_url"],
            locale=rendered.language,
        )
        return await self._send_and_record(delivery, channel, message, recipients, rendered, tally)

    async def _usable(
        self, input: SendStepInput, delivery: Delivery, customer: Customer, name: str, tally: _Tally
    ) -> Channel | None:
        """The channel, if it is there, for this customer (no email or ZNS for an anonymous visitor), not
        given up on by an earlier attempt, consented to, under its cap."""
        channel = self.channels.get(name)
        if channel is None:
            tally.reasons.append(_unavailable(name))
            return None
        if name in _KNOWN_ONLY and is_anonymous(customer.id):
            # A visitor not merged yet: an address they typed in is not yet someone who said who they are.
            reason = "the visitor is anonymous: email and Zalo wait until they are known"
            delivery.attempts.append({"channel": name, "outcome": "anonymous", "reason": reason})
            tally.reasons.append(f"{name}: {reason}")
            return None
        if name in tally.failed_before:
            tally.permanent = True
            tally.reasons.append(f"{name}: {tally.failed_before[name]}")
            return None
        topic = TRANSACTIONAL if input.transactional else MARKETING
        refusal = consent_refusal(customer.consents, name, topic, self.settings.marketing_consent_default)
        if refusal is not None:
            delivery.attempts.append({"channel": name, "outcome": "no_consent", "reason": refusal})
            tally.reasons.append(f"{name}: {refusal}")
            return None
        if topic == MARKETING and await self._over_channel_cap(customer.id, name):
            tally.capped = True
            delivery.attempts.append({"channel": name, "outcome": "capped"})
            tally.reasons.append(f"{name}: frequency cap reached")
            return None
        return channel

    def _render(
        self,
        input: SendStepInput,
        delivery: Delivery,
        customer: Customer,
        context: dict[str, Any],
        channel: Channel,
        tally: _Tally,
        source: MessageSource,
    ) -> Rendered | None:
        """The step's template for this channel, with every part the channel needs; None when it cannot give
        them (a missing, broken or incomplete template does not mend itself: the next channel, no retry)."""
        name = channel.name
        try:
            rendered = source(name, customer.locale, context)
        except TemplateUnusable as exc:
            tally.permanent = True
            tally.reasons.append(self._unusable(input, delivery, name, str(exc), _template_fields(exc)))
            return None
        tally.rendered = rendered
        missing = channel.missing_parts({p: v for p, v in rendered.parts.items() if channel.accepts(p)})
        if missing:
            tally.permanent = True
            problem = f"the template has no {', '.join(missing)} ({'; '.join(map(rendered.fix, missing))})"
            fields = {"template": list(rendered.files), "missing": missing, "locale": rendered.language}
            tally.reasons.append(self._unusable(input, delivery, name, problem, fields))
            return None
        if rendered.fallback:
            log.warning(
                "template language fallback",
                extra={
                    "journey": input.journey,
                    "step": input.step,
                    "channel": name,
                    "wanted_locale": rendered.wanted,
                    "locale": rendered.language,
                },
            )
        return rendered

    async def _send_and_record(
        self,
        delivery: Delivery,
        channel: Channel,
        message: OutboundMessage,
        recipients: list[Recipient],
        rendered: Rendered,
        tally: _Tally,
    ) -> _Outcome | None:
        """Send, and record the attempt: sent (the step is done), deferred, retried by Temporal, or permanent
        for this channel (a dead address suppressed)."""
        name = channel.name
        try:
            receipt = await self._send(channel, message, recipients)
        except RetryableDeliveryError as exc:
            delivery.attempts.append(_attempt_record(name, "retryable", reason=exc.reason))
            if exc.retry_after is not None and exc.retry_after >= DEFER_AFTER.total_seconds():
                retry_at = utcnow() + timedelta(seconds=exc.retry_after)
                return _Outcome(DeliveryStatus.DEFERRED, f"{name}: {exc.reason}", retry_at=retry_at)
            # Temporal retries the activity; the next attempt starts again from this channel.
            raise ApplicationError(
                f"{name}: {exc.reason}",
                type="RetryableDeliveryError",
                next_retry_delay=timedelta(seconds=exc.retry_after) if exc.retry_after else None,
            ) from None
        except PermanentDeliveryError as exc:
            tally.permanent = True
            tally.reasons.append(f"{name}: {exc.reason}")
            delivery.attempts.append(_attempt_record(name, "permanent", reason=exc.reason))
            if exc.address_dead and len(recipients) == 1 and recipients[0].subscription_id is None:
                await asyncio.to_thread(
                    self.store.deliveries.suppress,
                    name,
                    recipients[0].address,
                    exc.reason,
                    delivery.customer_id,
                )
            return None
        delivery.attempts.append(_attempt_record(name, "sent", locale=rendered.language))
        return _Outcome(DeliveryStatus.SENT, None, name, receipt.provider_id, rendered=rendered)

    @staticmethod
    def _unusable(
        input: SendStepInput, delivery: Delivery, channel: str, problem: str, fields: dict[str, Any]
    ) -> str:
        """Record that the step's template gives `channel` no message: permanent for that channel."""
        reason = f"journey {input.journey}, step {input.step}: {problem}"[:500]
        delivery.attempts.append(
            {"channel": channel, "outcome": "no_template", "reason": reason, "at": _now()}
        )
        # Ids and file names only: a template's own error message may quote the customer's data.
        log.error(
            "template unusable",
            extra={"journey": input.journey, "step": input.step, "channel": channel, **fields},
        )
        return f"{channel}: {reason}"

    async def _marketing_hold(self, input: SendStepInput, customer: Customer) -> _Outcome | None:
        """Quiet hours (defer) and the overall frequency cap (capped), for a marketing step."""
        if not all(name in PASSIVE_CHANNELS for name in input.channels) and self.quiet_hours is not None:
            until = self.quiet_hours.next_allowed(
                _journey_now(input), customer.timezone, self.settings.default_timezone
            )
            if until is not None:
                return _Outcome(
                    DeliveryStatus.DEFERRED, "quiet hours in the customer's time zone", retry_at=until
                )
        for cap, counted in zip(self.caps, self._sent, strict=True):
            if cap.channel is None:
                sent = await counted(customer.id)
                # The step's own live lease is one of those counted: it may go when the others fit.
                if sent - 1 >= cap.limit:
                    return _Outcome(DeliveryStatus.CAPPED, f"frequency cap: {cap.describe()}")
        return None

    async def _over_channel_cap(self, customer_id: str, channel: str) -> bool:
        for cap, counted in zip(self.caps, self._sent, strict=True):
            if cap.channel == channel:
                sent = await counted(customer_id)
                if sent >= cap.limit:
                    return True
        return False

    async def _send(self, channel: Channel, message: OutboundMessage, recipients: list[Recipient]) -> Receipt:
        """Send to every recipient at once; the step went out when one of them took it.

        A push subscription the service calls gone is deleted. When none took it, the most hopeful error is
        raised: a retryable one if any, else the first permanent one.
        """
        results = await asyncio.gather(
            *(self._timed_send(channel, replace(message, address=r.address)) for r in recipients),
            return_exceptions=True,
        )
        receipts: list[Receipt] = []
        errors: list[DeliveryError] = []
        for recipient, result in zip(recipients, results, strict=True):
            if isinstance(result, Receipt):
                receipts.append(result)
            elif isinstance(result, DeliveryError):
                errors.append(result)
            elif isinstance(result, Exception):
                # A channel failing in a way it did not classify will not mend on a retry: that channel is
                # done for this step (the next one is tried), and the error is logged for whoever owns it.
                # Its message may quote the customer's data: the log names the type and where it came from.
                frame = traceback.extract_tb(result.__traceback__)[-1:] or None
                log.error(
                    "channel raised an unclassified error",
                    extra={
                        "channel": channel.name,
                        "error": type(result).__name__,
                        "at": f"{frame[0].filename}:{frame[0].lineno}" if frame else None,
                    },
                )
                errors.append(PermanentDeliveryError(f"unexpected {type(result).__name__} in the channel"))
            else:
                raise result
            if recipient.subscription_id is not None:
                gone = isinstance(result, PermanentDeliveryError) and result.address_dead
                await asyncio.to_thread(
                    self.store.push.record_result,
                    recipient.subscription_id,
                    ok=isinstance(result, Receipt),
                    gone=gone,
                )
        if receipts:
            return receipts[0]
        raise next((e for e in errors if isinstance(e, RetryableDeliveryError)), errors[0])

    async def _timed_send(self, channel: Channel, message: OutboundMessage) -> Receipt:
        """One provider call, timed by channel and result (`touchflow_send_duration_seconds`)."""
        started = time.perf_counter()
        result = "error"
        try:
            with tracing.span(f"send {channel.name}", attributes={"touchflow.channel": channel.name}):
                receipt = await channel.send(message)
            result = "ok"
            return receipt
        except RetryableDeliveryError:
            result = "retryable"
            raise
        except PermanentDeliveryError:
            result = "permanent"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.send_latency.labels(channel.name, result).observe(elapsed)

    async def _context(
        self, input: SendStepInput, customer: Customer, delivery_id: int, event: Event | None
    ) -> dict[str, Any]:
        attributes = customer.attributes
        coupon = None
        if "coupon_id" in input.data:
            # The code is read here, at render time, so it never travels through Temporal's history.
            found = await asyncio.to_thread(self.store.coupons.get, int(input.data["coupon_id"]))
            if found is not None:
                coupon = {
                    "code": found.code,
                    "value": found.value,
                    "unit": found.unit,
                    "expires_at": found.expires_at,
                    "redeemed": found.redeemed_at is not None,
                }
        return {
            "brand": self.settings.brand_name,
            "customer": {
                "id": customer.id,
                "first_name": attributes.get("first_name") or attributes.get("name") or "",
                "attributes": attributes,
                "timezone": customer.timezone,
            },
            "event": event.properties if event else {},
            "data": input.data,
            "variant": input.variant,
            "coupon": coupon,
            "public_url": self.settings.public_url,
            "unsubscribe_url": self.unsubscribe_url(customer.id),
            # Tracked links and the open pixel count this delivery's clicks and opens in the funnel.
            "track": lambda url: self.tracked_link(delivery_id, str(url)),
            "open_pixel_url": self.open_pixel_url(delivery_id),
            # The built-in ZNS templates read their approved template id (per language) from the settings.
            "zalo_template_id": template_id_for(self.settings.zalo_template_ids, input.journey, input.step),
        }

    def unsubscribe_url(self, customer_id: str) -> str:
        token = self.signer.sign(Purpose.UNSUBSCRIBE, customer_id)
        return f"{self._public_url()}/unsubscribe/{token}"

    def open_pixel_url(self, delivery_id: int) -> str:
        return f"{self._public_url()}/t/o/{self.signer.sign(Purpose.OPEN, str(delivery_id))}.gif"

    def tracked_link(self, delivery_id: int, url: object) -> str:
        """`track(url)` in a template: a signed redirect through the API that records the click.

        Only for an http(s) URL on a host of TOUCHFLOW_LINK_DOMAINS (any host when it is empty). A path on
        the site, `mailto:` or `tel:` is left as it is. Anything else (`javascript:`, `data:`, another host)
        is left out, as "": the message still goes, with a link that goes nowhere. Event properties are
        untrusted, and a link we sign carries the shop's name to wherever it points; one that is missing
        or no string (an event without `cart_url`) is "" too.
        """
        url = url.strip() if isinstance(url, str) else ""
        if host_of(url) is None:
            link = safe_link(url)
        elif link_allowed(url, self.settings.link_domains):
            link = f"{self._public_url()}/t/c/{self.signer.sign(Purpose.CLICK, f'{delivery_id}|{url}')}"
        else:
            link = ""
        if not link and url:
            # The host at most: the rest of a link can carry a customer's data.
            log.warning(
                "link left out of a message",
                extra={"delivery_id": delivery_id, "host": host_of(url), "setting": LINK_DOMAINS},
            )
        return link

    def _public_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    @staticmethod
    def _result(delivery: Delivery) -> SendStepResult:
        return SendStepResult(
            status=_TO_RESULT[delivery.status],
            delivery_id=delivery.id or 0,
            channel=delivery.channel,
            reason=delivery.error,
            retry_at=delivery.retry_at,
        )


def _template_fields(exc: TemplateUnusable) -> dict[str, Any]:
    if isinstance(exc, TemplateBroken):
        return {"template": exc.template, "error": type(exc.error).__name__, "at_line": exc.line}
    return {"error": type(exc).__name__}


def _attempt_record(channel: str, outcome: str, **details: Any) -> dict[str, Any]:
    """One line of a delivery's attempts: the channel, what came of it, the details and when."""
    return {"channel": channel, "outcome": outcome, **details, "at": _now()}


def _now() -> str:
    return utcnow().isoformat()


def _journey_now(input: SendStepInput) -> datetime:
    """The journey's clock for this attempt: Temporal's when it scheduled the attempt. A local activity's
    schedule time is the worker's, set once for all its retries, so it is the later of the run's time when it
    asked for the step (skipped time in tests) and now."""
    try:
        info = activity.info()
    except RuntimeError:  # called outside an activity
        return utcnow()
    if info.is_local and input.asked_at is not None:
        return max(input.asked_at, utcnow())
    return info.current_attempt_scheduled_time


def _unavailable(name: str) -> str:
    """Why a step's channel is not there: no channel has that name (a typo), or its settings leave it off."""
    if name not in CHANNELS:
        close = difflib.get_close_matches(name, list(CHANNELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{name}: no such channel{hint}; channels: {', '.join(sorted(CHANNELS))}"
    return f"{name}: channel not configured (see its settings in the README)"
