"""The small base every journey stands on: declare it with `@journey`, write its plan, use these verbs.

    @journey(starts_on="signed_up", ends_on=("order_placed",), goals=("order_placed",))
    class Welcome(Journey):
        welcome = Step(via=("email",), stage=Stage.AWARENESS)

        async def plan(self, signup: JourneyEvent) -> None:
            await self.send(self.welcome)

Every event reaches a run through one signal, `on_event` (signal-with-start brings the trigger), and is
taken once: a repeated event id is ignored, so a relay that retries never acts twice.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import math
import textwrap
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from touchflow.activities.coupons import CouponActivities
    from touchflow.activities.journey import JourneyActivities
    from touchflow.activities.types import (
        EnterJourneyInput,
        EnterJourneyResult,
        IssueCouponInput,
        IssueCouponResult,
        LeaveJourneyInput,
        SendStatus,
        SendStepInput,
        SendStepResult,
    )
    from touchflow.errors import ConfigurationError
    from touchflow.settings import to_timedelta

    # Re-exported: journeys name them from here (and from touchflow.journeys).
    from touchflow.vocabulary import JourneyStatus as JourneyStatus
    from touchflow.vocabulary import Reentry as Reentry
    from touchflow.vocabulary import Stage as Stage

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("JourneyStage")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY_STAGE)

# Deliveries retry with backoff but give up within a day: a stale reminder is worse than none.
# Errors that no retry mends: our own code meeting data it cannot use. The step fails at once instead.
NON_RETRYABLE = ("ValueError", "TypeError", "KeyError", "AttributeError", "ConfigurationError")
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=NON_RETRYABLE,
)
DELIVERY_GIVE_UP = timedelta(hours=12)
# Deliveries run as local activities in runs that record this patch (docs/journeys.md, "Changing a journey").
LOCAL_DELIVERIES = "local-deliveries"
# Waits between a delivery's attempts (2 s and up) longer than this are durable timers, not sleeps in the
# worker: the run's workflow task is not held open meanwhile (and tests skip the wait).
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)
# The longest one delivery attempt may take: every channel's own timeouts are far shorter.
ATTEMPT_LIMIT = timedelta(minutes=10)
BOOKKEEPING_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), maximum_attempts=20, non_retryable_error_types=NON_RETRYABLE
)
# A journey's own activities (`Journey.call`): a few attempts, then the plan sees the error.
CALL_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5)
# Timings every run gets from the engine, besides the ones its journey declares.
ENGINE_TIMINGS = ("delivery_attempt_timeout",)
# How many event ids a run remembers to drop repeats (a relay retry arrives within seconds).
SEEN_EVENTS_KEPT = 500


@dataclass
class JourneyEvent:
    """An event as a journey sees it: ids and behaviour, never the customer's profile."""

    id: str
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


@dataclass
class JourneyInput:
    customer_id: str
    entry_key: str | None = None
    # Set when the run continues-as-new: the journey's own state and what the base must remember.
    carried: dict[str, Any] | None = None


@dataclass
class JourneyOutcome:
    status: JourneyStatus  # completed | converted | exited | not_admitted
    ended_by: str | None = None


@dataclass
class JourneyState:
    """What `get_state` answers: where the customer is, for the Temporal UI and the API."""

    journey: str
    customer_id: str
    stage: str | None
    detail: str
    sent: list[str]
    ended_by: str | None
    # Sticky A/B assignments of this run: experiment → variant.
    variants: dict[str, str] = field(default_factory=dict)
    # The journey's own state (`Journey.snapshot`), e.g. the loyalty points and tier.
    data: dict[str, Any] = field(default_factory=dict)


class Timing:
    """A duration a journey declares (`@journey(timings={"win_back_delay": Timing("30d", "...")})`).

    Each is a setting of its own, `TOUCHFLOW_<NAME>`; a plain `"30d"` or `timedelta` declares one too.
    """

    __slots__ = ("default", "help")

    def __init__(self, default: timedelta | str, help: str = "") -> None:
        self.default = to_timedelta(default)
        self.help = help

    def __repr__(self) -> str:
        return f"Timing({self.default!r}, {self.help!r})"


@dataclass(frozen=True)
class Param:
    """A non-duration setting a journey declares: a number, a word, a `name:value` table.

    `TOUCHFLOW_<NAME>` overrides the default; the text is read as the default's type (`parser` to check it
    yourself: a function from the text to the value that raises ValueError with the reason).
    """

    default: Any
    help: str = ""
    parser: Callable[[str], Any] | None = field(default=None, compare=False)

    def parse(self, raw: str) -> Any:
        return self.parser(raw) if self.parser is not None else parse_like(self.default, raw)


def parse_like(default: Any, raw: str) -> Any:
    """Read `raw` as a value of the default's type: `true`, `12`, `0.5`, `a,b`, `silver:1000,gold:5000`."""
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, dict):
        sample = next(iter(default.values()), "")
        table: dict[str, Any] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition(":")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"{item!r} must look like 'name:value'")
            table[name.strip()] = parse_like(sample, value) if not isinstance(sample, dict) else value.strip()
        return table
    if isinstance(default, list | tuple):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


@dataclass(frozen=True)
class Step:
    """A message step: its template (the attribute name), channels to try in order, the stage it serves.

    `transactional` steps (an order confirmation) skip the exit guard and marketing consent. With
    `experiment` set, every send of the step is split sticky between `variants` (see `Journey.split`): the
    variant is recorded on the delivery and handed to the template as `variant`.
    """

    via: tuple[str, ...]
    stage: Stage
    transactional: bool = False
    name: str = ""
    experiment: str | None = None
    variants: tuple[str, ...] = ("a", "b")

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.name:
            object.__setattr__(self, "name", name)


@dataclass(frozen=True)
class JourneySpec:
    """A journey as the registry, the router and `touchflow journeys` see it."""

    name: str
    workflow: type[Journey]
    starts_on: tuple[str, ...]
    ends_on: tuple[str, ...]
    goals: tuple[str, ...]
    listens_to: tuple[str, ...]
    key: str | None
    reentry: Reentry
    cooldown: timedelta | None
    steps: tuple[Step, ...]
    description: str
    timings: dict[str, Timing] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    # Every event the run takes (asked per event ingested: kept, not rebuilt).
    _events: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_events", frozenset((*self.starts_on, *self.ends_on, *self.listens_to)))

    def workflow_id(self, customer_id: str, entry_key: str | None = None) -> str:
        return ":".join(part for part in (self.name, customer_id, entry_key) if part)

    def entry_key(self, properties: dict[str, Any]) -> str | None:
        if self.key is None:
            return None
        value = properties.get(self.key)
        return None if value is None else str(value)

    @property
    def id_reuse_policy(self) -> WorkflowIDReusePolicy:
        return self.reentry.id_reuse_policy

    # An event for a customer already in the journey feeds that run (signal-with-start), never a second one.
    id_conflict_policy: ClassVar[WorkflowIDConflictPolicy] = WorkflowIDConflictPolicy.USE_EXISTING

    def search_attributes(self, customer_id: str) -> TypedSearchAttributes:
        return TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, customer_id)])

    def events(self) -> frozenset[str]:
        return self._events


J = TypeVar("J", bound="Journey")
_REQUIRED: Any = object()


def journey(
    *,
    starts_on: str | Sequence[str],
    ends_on: Sequence[str] = (),
    goals: Sequence[str] = (),
    listens_to: Sequence[str] = (),
    key: str | None = None,
    reentry: Reentry = Reentry.ONCE,
    cooldown: timedelta | None = None,
    name: str | None = None,
    timings: Mapping[str, Timing | timedelta | str] | None = None,
    params: Mapping[str, Param | Any] | None = None,
) -> Callable[[type[J]], type[J]]:
    """Make a `Journey` subclass a Temporal workflow and describe it for the router.

    `ends_on` events end a run (those also in `goals` count as converted); `listens_to` events are handed to
    a running plan (`wait_for`); `key` names the event property that tells entries apart (a cart id).
    `timings` and `params` declare the journey's settings with their defaults; each is overridable by
    `TOUCHFLOW_<NAME>`, and `self.wait("name")`, `self.timing("name")`, `self.param("name")` read them.
    """

    def wrap(cls: type[J]) -> type[J]:
        if not inspect.iscoroutinefunction(getattr(cls, "plan", None)):
            raise TypeError(f"{cls.__name__} needs `async def plan(self, trigger: JourneyEvent) -> None`")
        journey_name = name or _snake(cls.__name__)
        if reentry is Reentry.COOLDOWN and cooldown is None:
            raise ConfigurationError(f"journey {journey_name}: reentry=COOLDOWN needs a cooldown")
        declared_timings = {
            key: value if isinstance(value, Timing) else Timing(to_timedelta(value))
            for key, value in (timings or {}).items()
        }
        declared_params = {
            key: value if isinstance(value, Param) else Param(value) for key, value in (params or {}).items()
        }
        if not workflow.unsafe.in_sandbox():
            # The sandbox re-runs this for every run: the check belongs to the first import only.
            _check_names(cls, journey_name, declared_timings, declared_params)
        spec = JourneySpec(
            name=journey_name,
            workflow=cls,
            starts_on=(starts_on,) if isinstance(starts_on, str) else tuple(starts_on),
            ends_on=tuple(dict.fromkeys((*ends_on, *goals))),
            goals=tuple(goals),
            listens_to=tuple(listens_to),
            key=key,
            reentry=reentry,
            cooldown=cooldown,
            steps=tuple(v for v in vars(cls).values() if isinstance(v, Step)),
            description=(cls.__doc__ or "").strip().split("\n")[0],
            timings=declared_timings,
            params=declared_params,
        )
        cls.spec = spec

        # Temporal wants the @workflow.run method defined on the workflow class itself, so each journey
        # gets its own thin one; the logic stays in Journey._run.
        # `self` stays unannotated: Temporal reads the argument types from the hints and skips a bare self.
        async def run(self, input: JourneyInput) -> JourneyOutcome:  # type: ignore[no-untyped-def]
            return await cast(Journey, self)._run(input)

        run.__module__ = cls.__module__
        run.__qualname__ = f"{cls.__name__}.run"
        cls.run = workflow.run(run)  # type: ignore[attr-defined]
        return workflow.defn(name=journey_name)(cls)

    return wrap


# -- reading event properties: they are untrusted input, and a plan that raises on one stalls the run -------

_INT_LIMIT = 10**15  # far beyond any points, quantity or amount; past it a number is noise, not data


def as_int(value: Any, default: int = 0) -> int:
    """An event property as a whole number: `12`, `12.7`, `"12"` → 12; `"lots"`, `None`, `1e100` → default."""
    number = as_number(value, None)
    if number is None or abs(number) > _INT_LIMIT:
        return default
    return int(number)


def as_number(value: Any, default: float | None = 0.0) -> float | None:
    """An event property as a finite number (`"12.5"` too); anything else → default."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return default
    else:
        return default
    return number if math.isfinite(number) else default


def as_datetime(value: Any) -> datetime | None:
    """An event property as an aware time: ISO 8601 text (naive is read as UTC); anything else → None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def as_text(value: Any, limit: int = 200) -> str | None:
    """An event property as one line of text (control characters dropped, at most `limit` characters)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable())
    return text[:limit] or None


def sticky_variant(customer_id: str, experiment: str, variants: Sequence[str]) -> str:
    """The variant of `experiment` for this customer: a hash of both, so every entry gets the same one."""
    if not variants:
        raise ValueError(f"experiment {experiment!r} needs at least one variant")
    digest = hashlib.sha256(f"{experiment}:{customer_id}".encode()).digest()
    return variants[int.from_bytes(digest[:8], "big") % len(variants)]


def _check_names(
    cls: type, journey_name: str, timings: Mapping[str, Timing], params: Mapping[str, Param]
) -> None:
    """Every `self.wait("name")`, `self.timing("name")`, `wait_for(timeout="name")` and `self.param("name")`
    in the class names a declared setting: a typo fails here, when the class is defined, not mid-journey."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return  # no source to read (an interactive session): the run-time check still applies
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            continue
        method = node.func.attr
        named = [*node.args[:1]] if method in ("wait", "timing", "param") else []
        named += [kw.value for kw in node.keywords if method == "wait_for" and kw.arg == "timeout"]
        kind, table, known = (
            ("parameter", "params", params) if method == "param" else ("timing", "timings", timings)
        )
        for arg in named:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                continue
            if arg.value in known or arg.value in ENGINE_TIMINGS:
                continue
            example = "<default>" if kind == "parameter" else '"1d"'
            raise ConfigurationError(
                f"journey {journey_name}: self.{method}({arg.value!r}) in {cls.__qualname__} (line "
                f"{arg.lineno} of the class) names no declared {kind}; declare it: "
                f"@journey(..., {table}={{{arg.value!r}: {example}}})" + _did_you_mean(arg.value, known)
            )


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _snake(name: str) -> str:
    name = name.removesuffix("Journey")
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Journey:
    """Base of every journey: holds the run's state and gives the plan its verbs."""

    spec: ClassVar[JourneySpec]

    def __init__(self) -> None:
        self.customer_id = ""
        self.entry_key: str | None = None
        self.entered_at: datetime | None = None
        self.ended_by: JourneyEvent | None = None
        self.stage: Stage | None = None
        self.detail = "waiting for the trigger"
        self.sent: list[str] = []
        self.variants: dict[str, str] = {}
        self._timings: dict[str, float] = {}
        self._params: dict[str, Any] = {}
        # The guard looks for exit events from here on: the earlier of entry and the trigger's own time,
        # so an order stored before a late `cart_updated` started the run still counts.
        self._since: datetime | None = None
        self._entry_id = 0
        self._triggered = False
        self._trigger_id: str | None = None
        self._inbox: deque[JourneyEvent] = deque()
        self._seen: deque[str] = deque(maxlen=SEEN_EVENTS_KEPT)
        self._step_counts: dict[str, int] = {}
        self._latest: dict[str, JourneyEvent] = {}
        self._arrived: dict[str, datetime] = {}

    # -- what Temporal calls --------------------------------------------------------------------------------

    @workflow.signal
    def on_event(self, event: JourneyEvent) -> None:
        if event.id in self._seen:
            return  # a relay retry: already taken
        self._seen.append(event.id)
        self._latest[event.name] = event
        self._arrived[event.name] = workflow.now()
        # The event that starts the run is never its own exit or goal: a win-back that starts on an order and
        # has a later order as its goal counts only orders after the first.
        trigger = event.name in self.spec.starts_on and not self._triggered
        if event.name in self.spec.ends_on and not trigger:
            if self.ended_by is None and self._matches_entry(event):
                self.ended_by = event
            return
        self._triggered = self._triggered or trigger
        self._inbox.append(event)

    @workflow.query
    def get_state(self) -> JourneyState:
        return JourneyState(
            journey=self.spec.name,
            customer_id=self.customer_id,
            stage=self.stage.value if self.stage else None,
            detail=self.detail,
            sent=list(self.sent),
            ended_by=self.ended_by.name if self.ended_by else None,
            variants=dict(self.variants),
            data=self.snapshot(),
        )

    async def _run(self, input: JourneyInput) -> JourneyOutcome:
        info = workflow.info()
        self.customer_id = input.customer_id
        self.entry_key = input.entry_key
        if input.carried:
            self._restore(input.carried)
            trigger = None
        else:
            await workflow.wait_condition(lambda: bool(self._inbox) or self.ended_by is not None)
            if not self._inbox:
                return JourneyOutcome(status=JourneyStatus.EXITED, ended_by=self._ended_name())
            trigger = self._inbox.popleft()
            self._trigger_id = trigger.id
            # Local activities: bookkeeping in the worker, recorded with the workflow task (no extra
            # round trips through the server on the way to the first message).
            entry: EnterJourneyResult = await workflow.execute_local_activity_method(
                JourneyActivities.enter_journey,
                EnterJourneyInput(
                    journey=self.spec.name,
                    workflow_id=info.workflow_id,
                    run_id=info.first_execution_run_id,
                    customer_id=self.customer_id,
                    entry_key=self.entry_key,
                    reentry=self.spec.reentry,
                    cooldown_seconds=self.spec.cooldown.total_seconds() if self.spec.cooldown else None,
                    trigger_event_id=trigger.id,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=BOOKKEEPING_RETRY,
            )
            if not entry.admitted:
                self._set_detail(f"not admitted: {entry.reason}")
                return JourneyOutcome(status=JourneyStatus.NOT_ADMITTED, ended_by=entry.reason)
            self.entered_at = entry.entered_at
            self._entry_id = entry.entry_id
            self._timings = entry.timings
            self._params = entry.params
            self._since = min(entry.entered_at, trigger.occurred_at or entry.entered_at)
        await self.plan(trigger)  # type: ignore[arg-type]
        status = JourneyStatus.COMPLETED
        if self.ended_by is not None:
            status = (
                JourneyStatus.CONVERTED if self.ended_by.name in self.spec.goals else JourneyStatus.EXITED
            )
        self._set_detail(f"ended: {status}")
        await workflow.execute_local_activity_method(
            JourneyActivities.leave_journey,
            LeaveJourneyInput(run_id=info.first_execution_run_id, status=status, ended_by=self._ended_name()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )
        return JourneyOutcome(status=status, ended_by=self._ended_name())

    # -- the verbs a plan uses ------------------------------------------------------------------------------

    # Every journey writes `async def plan(self, trigger)`; `@journey` refuses a class without one.
    plan: Callable[[JourneyEvent], Coroutine[Any, Any, None]]

    @property
    def entry_number(self) -> int:
        """This entry's number in the store (`journey_entries.id`): part of every business key of the run."""
        return self._entry_id

    @property
    def ended(self) -> bool:
        return self.ended_by is not None

    def timing(self, name: str) -> timedelta:
        """A timing the journey declares (`TOUCHFLOW_<NAME>`), as in force when this run entered.

        A run that entered before the timing was declared gets its declared default.
        """
        if name in self._timings:
            return timedelta(seconds=self._timings[name])
        if name in self.spec.timings:
            return self.spec.timings[name].default
        raise KeyError(f"journey {self.spec.name} declares no timing {name!r} (@journey(timings=...))")

    def param(self, name: str, default: Any = _REQUIRED) -> Any:
        """A parameter the journey declares (`TOUCHFLOW_<NAME>`), as in force when this run entered."""
        if name in self._params:
            return self._params[name]
        if name in self.spec.params:
            return self.spec.params[name].default
        if default is not _REQUIRED:
            return default
        raise KeyError(f"journey {self.spec.name} declares no parameter {name!r} (@journey(params=...))")

    def split(self, experiment: str, variants: Sequence[str] = ("a", "b")) -> str:
        """The customer's sticky variant of an A/B experiment (same on every entry); shown in `get_state`."""
        variant = sticky_variant(self.customer_id, experiment, variants)
        self.variants[experiment] = variant
        return variant

    async def wait(self, duration: timedelta | str, *, restart_on: Sequence[str] = ()) -> bool:
        """Sleep durably; False when an exit event ended the journey first (the plan should stop).

        An event named in `restart_on` (a newer `cart_updated`) starts the wait over; `latest(name)` then
        gives its newest contents.
        """
        delay = self.timing(duration) if isinstance(duration, str) else duration
        restarted: list[JourneyEvent] = []

        def woken() -> bool:
            if self.ended:
                return True
            for event in list(self._inbox):
                if event.name in restart_on:
                    self._inbox.remove(event)
                    restarted.append(event)
                    return True
            return False

        while True:
            if self.ended:
                return False
            self._set_detail(f"waiting {delay} until {workflow.now() + delay:%Y-%m-%d %H:%M} UTC")
            restarted.clear()
            try:
                await workflow.wait_condition(woken, timeout=delay)
            except TimeoutError:
                return True
            if not restarted:
                return False

    async def wait_for(
        self,
        *names: str,
        timeout: timedelta | str,
        where: Callable[[JourneyEvent], bool] | None = None,
    ) -> JourneyEvent | None:
        """The next event of these names within `timeout`, or None (also None when the journey ended)."""
        limit = self.timing(timeout) if isinstance(timeout, str) else timeout
        found: list[JourneyEvent] = []

        def arrived() -> bool:
            if self.ended:
                return True
            for event in list(self._inbox):
                if event.name in names and (where is None or where(event)):
                    self._inbox.remove(event)
                    found.append(event)
                    return True
            return False

        self._set_detail(f"waiting up to {limit} for {' or '.join(names)}")
        try:
            await workflow.wait_condition(arrived, timeout=limit)
        except TimeoutError:
            return None
        return found[0] if found else None

    def latest(self, name: str) -> JourneyEvent | None:
        """The newest event of this name the run has seen (the trigger included)."""
        return self._latest.get(name)

    def since_latest(self, name: str) -> timedelta:
        """Journey time since the newest event of this name reached the run (zero when none did)."""
        arrived = self._arrived.get(name)
        return workflow.now() - arrived if arrived else timedelta(0)

    async def send(
        self,
        step: Step,
        *,
        event: JourneyEvent | None = None,
        variant: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> SendStepResult | None:
        """Deliver a step over the first channel that reaches the customer; None when the journey ended."""
        if self.ended:
            return None
        if step.experiment and variant is None:
            variant = self.split(step.experiment, step.variants)
        info = workflow.info()
        count = self._step_counts.get(step.name, 0) + 1
        self._step_counts[step.name] = count
        # The business key: journey, customer, entry (workflow id + entry number) and step.
        key = f"{info.workflow_id}:{self._entry_id}:{step.name}"
        if count > 1:
            key += f"#{count}"
        self._set_stage(step.stage)
        self._set_detail(f"sending {step.name}")
        while True:
            result = await self._deliver(step, key, event, variant, data)
            if result.status != SendStatus.DEFERRED or result.retry_at is None:
                break
            # Quiet hours or a provider's window: sleep durably until then, then ask again (same key).
            if not await self.wait(max(result.retry_at - workflow.now(), timedelta(seconds=1))):
                return None
        if result.status == SendStatus.SENT:
            self.sent.append(step.name)
        elif result.ended_by and self.ended_by is None:
            # The guard found the exit in the store before its signal came (or it never will).
            self.ended_by = JourneyEvent(id=result.ended_by_event_id or "", name=result.ended_by)
        self._set_detail(f"{step.name}: {result.status} via {result.channel or '-'}")
        return result

    async def call(
        self,
        activity: Callable[..., Any],
        *args: Any,
        timeout: timedelta | str = timedelta(minutes=1),
        attempts: int = CALL_RETRY.maximum_attempts,
    ) -> Any:
        """Run one of your own activities (an `@activity.defn` function of a `TOUCHFLOW_JOURNEYS` module).

        Retried with backoff up to `attempts` times (0: until it succeeds); `timeout` bounds each attempt. An
        `ApplicationError(non_retryable=True)` from the activity is not retried. Returns what it returns.
        """
        limit = self.timing(timeout) if isinstance(timeout, str) else timeout
        name = getattr(activity, "__name__", "activity")
        self._set_detail(f"calling {name}")
        return await workflow.execute_activity(
            activity,
            args=list(args),
            start_to_close_timeout=limit,
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=attempts),
        )

    async def issue_coupon(
        self,
        valid_for: timedelta | str,
        *,
        value: float,
        unit: str = "percent",
        name: str = "coupon",
    ) -> IssueCouponResult:
        """A unique single-use coupon for this customer: `value` percent off, or an amount in `unit` (`VND`).

        One per `name` and entry: a retried or replayed call gets the same coupon. The code itself never
        enters the history; a step's template sees it when you send with `data={"coupon_id": ...}`.
        An `order_placed` carrying the code records the redemption and sends `coupon_redeemed` to the run.
        """
        lifetime = self.timing(valid_for) if isinstance(valid_for, str) else valid_for
        info = workflow.info()
        self._set_detail("issuing a coupon")
        key = f"{info.workflow_id}:{self.entry_number}:{name}"
        result: IssueCouponResult = await workflow.execute_activity_method(
            CouponActivities.issue_coupon,
            IssueCouponInput(
                customer_id=self.customer_id,
                key=key,
                journey=self.spec.name,
                entry_key=self.entry_key,
                expires_at=workflow.now() + lifetime,
                value=value,
                unit=unit,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BOOKKEEPING_RETRY,
        )
        return result

    async def _deliver(
        self,
        step: Step,
        key: str,
        event: JourneyEvent | None,
        variant: str | None,
        data: dict[str, Any] | None,
    ) -> SendStepResult:
        info = workflow.info()
        input = SendStepInput(
            journey=self.spec.name,
            step=step.name,
            workflow_id=info.workflow_id,
            customer_id=self.customer_id,
            key=key,
            channels=list(step.via),
            stage=step.stage,
            entered_at=self._since or self.entered_at or workflow.now(),
            transactional=step.transactional,
            event_id=event.id if event else None,
            exit_on=[] if step.transactional else list(self.spec.ends_on),
            trigger_event_id=self._trigger_id,
            exit_match=self._entry_match(),
            variant=variant,
            data=data or {},
            asked_at=workflow.now(),
        )
        try:
            if workflow.patched(LOCAL_DELIVERIES):
                # In the worker running the journey, recorded with its workflow task: no round trip through
                # the server. The send lease keeps it the one attempt sending; a dead worker's attempt is run
                # again when its workflow task times out, after the lease has lapsed.
                result: SendStepResult = await workflow.execute_local_activity_method(
                    JourneyActivities.deliver_step,
                    input,
                    start_to_close_timeout=ATTEMPT_LIMIT,
                    schedule_to_close_timeout=DELIVERY_GIVE_UP,
                    retry_policy=DELIVERY_RETRY,
                    # A failing provider does not hold the run's workflow task (and its worker slot).
                    local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                )
            else:
                # Runs that started before deliveries went local: their histories schedule activities.
                result = await workflow.execute_activity_method(
                    JourneyActivities.deliver_step,
                    input,
                    heartbeat_timeout=self._attempt_timeout(),
                    start_to_close_timeout=ATTEMPT_LIMIT,
                    schedule_to_close_timeout=DELIVERY_GIVE_UP,
                    retry_policy=DELIVERY_RETRY,
                )
        except (ActivityError, ApplicationError) as exc:
            if is_cancelled_exception(exc):
                raise  # the run itself was cancelled: it stops here, not at its next step
            # Given up on (12 hours of retryable failures) or failed for good: the step is recorded failed by
            # the activity where it could be; the journey goes on rather than failing the customer's run. (A
            # local activity's failure comes as its cause itself, not wrapped in an ActivityError.)
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            workflow.logger.warning("step %s failed: %s", step.name, type(cause).__name__)
            return SendStepResult(status=SendStatus.FAILED, delivery_id=0, reason=reason[:500])
        return result

    # -- helpers --------------------------------------------------------------------------------------------

    def _attempt_timeout(self) -> timedelta:
        # Runs recorded before the setting existed carry no value: they keep the old minute.
        return timedelta(seconds=self._timings.get("delivery_attempt_timeout", 60))

    def _entry_match(self) -> dict[str, Any]:
        if self.spec.key and self.entry_key is not None:
            return {self.spec.key: self.entry_key}
        return {}

    def _matches_entry(self, event: JourneyEvent) -> bool:
        """An exit event for another entry (another cart) does not end this run; one without the key does."""
        if not self.spec.key or self.spec.key not in event.properties:
            return True
        return str(event.properties[self.spec.key]) == self.entry_key

    def _ended_name(self) -> str | None:
        return self.ended_by.name if self.ended_by else None

    def _set_stage(self, stage: Stage) -> None:
        if stage != self.stage:
            self.stage = stage
            workflow.upsert_search_attributes([JOURNEY_STAGE.value_set(stage.value)])

    def snapshot(self) -> dict[str, Any]:
        """The journey's own state for `get_state` (the Temporal UI, the API); journeys override it."""
        return {}

    def _set_detail(self, detail: str) -> None:
        self.detail = detail
        workflow.set_current_details(detail)

    def carry(self) -> dict[str, Any]:
        """The base's state for continue-as-new; journeys add their own with `super().carry()`."""
        return {
            "entered_at": self.entered_at.isoformat() if self.entered_at else None,
            "timings": self._timings,
            "params": self._params,
            "since": self._since.isoformat() if self._since else None,
            "variants": self.variants,
            "entry_id": self._entry_id,
            "trigger_id": self._trigger_id,
            "seen": list(self._seen),
            "step_counts": self._step_counts,
            "stage": self.stage.value if self.stage else None,
            "sent": self.sent,
        }

    def _restore(self, carried: dict[str, Any]) -> None:
        entered = carried.get("entered_at")
        self.entered_at = datetime.fromisoformat(entered) if entered else None
        self._timings = dict(carried.get("timings", {}))
        self._params = dict(carried.get("params", {}))
        since = carried.get("since")
        self._since = datetime.fromisoformat(since) if since else self.entered_at
        self.variants = dict(carried.get("variants", {}))
        self._seen.extend(carried.get("seen", []))
        self._step_counts = dict(carried.get("step_counts", {}))
        self._entry_id = int(carried.get("entry_id", 0))
        self._triggered = True
        self._trigger_id = carried.get("trigger_id")
        for event in carried.get("inbox", []):
            occurred = event.get("occurred_at")
            event["occurred_at"] = datetime.fromisoformat(occurred) if occurred else None
            self._inbox.append(JourneyEvent(**event))
        self.stage = Stage(carried["stage"]) if carried.get("stage") else None
        self.sent = list(carried.get("sent", []))
        self.restore(carried)

    def restore(self, carried: dict[str, Any]) -> None:
        """Journeys that continue-as-new read their own state back here."""

    def continue_as_new(self) -> None:
        """Start a fresh run with the same state (history stays small); pending events go along."""
        workflow.continue_as_new(
            JourneyInput(
                customer_id=self.customer_id,
                entry_key=self.entry_key,
                carried={**self.carry(), "inbox": [vars(e) for e in self._inbox]},
            )
        )
