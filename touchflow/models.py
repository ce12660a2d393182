"""Storage tables (SQLModel) and the API's data shapes built on them.

Families follow the FastAPI template: `X(table=True)` is the row, `XIn` what a client sends and
`XPublic` what the API answers.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, TypeDecorator, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from touchflow.encoding import b64url_decode
from touchflow.segments import ENTERED_PREFIX, EXITED_PREFIX
from touchflow.vocabulary import BroadcastStatus as BroadcastStatus  # re-exported: the table's status
from touchflow.vocabulary import JourneyStatus as JourneyStatus  # re-exported: the table's status


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def json_column(nullable: bool = False) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONType, nullable=nullable))


def time_column(*, nullable: bool = False, index: bool = False) -> Any:
    default: Any = None if nullable else utcnow
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True, index=index))
    return Field(default_factory=default, sa_column=Column(UTCDateTime(), nullable=False, index=index))


# ---------------------------------------------------------------------------------------------------------
# Validated scalar types shared by the API models
# ---------------------------------------------------------------------------------------------------------


def _check_locale(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*", value):
        raise ValueError("must be a language tag such as 'vi', 'en' or 'vi-VN'")
    return value.replace("_", "-")


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as 'Asia/Ho_Chi_Minh'") from None
    return value


def _check_phone(value: str) -> str:
    digits = re.sub(r"[\s().-]", "", value)
    if not re.fullmatch(r"\+?\d{8,15}", digits):
        raise ValueError("must be a phone number of 8 to 15 digits, e.g. '+84912345678'")
    return digits


# Text every database can hold, and numbers JSON can: PostgreSQL refuses NUL in text and JSON, a lone
# surrogate (half of a UTF-16 pair) is not Unicode at all, and JSON has no NaN or Infinity (Python's json
# reads them all the same). Refused at the API, with the field named, instead of a 500 from the database.
_NUL = "must not hold a NUL character (\\u0000): no database stores it; remove it"
_SURROGATE = (
    "must be valid Unicode, not a lone surrogate (half of a UTF-16 pair such as \\ud800): "
    "send the whole character"
)


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return _NUL
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE
    return None


def storable_text(value: object) -> bool:
    """A string every database (and JSON encoder) takes as it is."""
    return isinstance(value, str) and _text_problem(value) is None


def _check_text(value: Any) -> Any:
    """Before str validation, so a lone surrogate gets this message rather than pydantic's own."""
    if isinstance(value, str) and (problem := _text_problem(value)):
        raise PydanticCustomError("unstorable_text", problem)
    return value


def _json_problem(value: Any) -> str | None:
    """The first string or number in a JSON value that cannot be stored, named by its path (`items.0.sku`).

    Iterative: the JSON parser allows nesting deeper than Python's recursion limit would."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if problem := _text_problem(item):
                return f"{path} {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                written = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
                return f"{path} is {written}, which JSON does not allow: send a finite number, or null"
        elif isinstance(item, dict):
            for key, child in item.items():
                if problem := _text_problem(key):
                    return f"a name in {path} {problem}" if path else f"a name {problem}"
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend(
                (f"{path}.{index}" if path else str(index), child) for index, child in enumerate(item)
            )
    return None


# Free-form JSON a client sends (event properties, profile attributes) is bounded, so one record stays small.
MAX_JSON_BYTES = 32 * 1024


# Validation context of a message measured whole already (a Segment message within its 32 KB): its parts
# are within MAX_JSON_BYTES, and measuring each again would cost the ingest path for nothing.
MEASURED = {"measured": True}


def _check_json_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if problem := _json_problem(value):
        raise PydanticCustomError("unstorable_json", problem)
    if info.context is MEASURED:
        return value
    size = len(json.dumps(value, default=str))  # ASCII-escaped: a safe upper bound, and the fast path
    if size > MAX_JSON_BYTES:
        raise ValueError(f"at most {MAX_JSON_BYTES // 1024} KiB of JSON; this is {size} bytes")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json_object)]

# An event's own time: with a zone (a naive time is nobody's), and in a sane range (a year-1 date or one
# from next year is a client's bug, and would sort and expire coupons wrongly).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
EVENT_CLOCK_SKEW = timedelta(days=1)


def _check_event_time(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise PydanticCustomError(
            "timezone_required",
            "must carry a time zone, e.g. 2026-05-01T09:30:00+07:00 or 2026-05-01T02:30:00Z",
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # year 1 east of Greenwich: before any UTC a datetime holds
        utc = None
    if utc is None or not EARLIEST_EVENT_TIME <= utc <= utcnow() + EVENT_CLOCK_SKEW:
        raise PydanticCustomError(
            "timestamp_out_of_range",
            "must lie between 2000-01-01 and a day from now (UTC); this one is {when}: "
            "check the sender's clock and time zone",
            {"when": value.isoformat()},
        )
    return value


Identifier = Annotated[
    str,
    BeforeValidator(_check_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^\s/?#]+$"),
]


# The error type of an event name a client may not send (the Segment path drops such a message under it).
RESERVED_EVENT_NAME = "reserved_event_name"


def _check_event_name(value: str) -> str:
    if re.search("[\x00-\x1f\x7f]", value):
        raise PydanticCustomError(
            "event_name", "must not hold line breaks, tabs or other control characters: name it in one line"
        )
    if value.startswith((ENTERED_PREFIX, EXITED_PREFIX)):
        raise PydanticCustomError(
            RESERVED_EVENT_NAME,
            f"{ENTERED_PREFIX}* and {EXITED_PREFIX}* are the events touchflow records when a customer enters "
            "or leaves a segment; a client cannot send them: name your event otherwise",
        )
    return value


# Names as the sender's tracking plan has them: `order_placed`, and Segment's `Order Completed` alike.
EventName = Annotated[
    str,
    BeforeValidator(_check_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_check_event_name),
]
Text = Annotated[str, BeforeValidator(_check_text)]

# The value of a journey's key property (`cart_id`, `order_id`) tells its runs apart: it becomes part of
# Temporal workflow ids (`<journey>:<customer id>:<key>`, held in columns of WORKFLOW_ID_MAX_LENGTH) and is
# kept in `journey_entries.entry_key` and `coupons.entry_key`, so it is bounded like them.
ENTRY_KEY_MAX_LENGTH = 128
WORKFLOW_ID_MAX_LENGTH = 300
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def entry_key_problem(value: Any) -> str | None:
    """What keeps an event property's value from being an entry key, or None (strings and numbers are)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"must be a string or a number, not {type(value).__name__}"
    key = str(value)
    if not key.strip():
        return "must not be empty"
    if len(key) > ENTRY_KEY_MAX_LENGTH:
        return f"must be at most {ENTRY_KEY_MAX_LENGTH} characters; this one has {len(key)}"
    if _CONTROL.search(key):
        return "must not hold line breaks (CR, LF) or other control characters"
    return None


EventTime = Annotated[datetime, AfterValidator(_check_event_time)]

Locale = Annotated[str, StringConstraints(max_length=35), AfterValidator(_check_locale)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_timezone)]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(_check_phone)]


# ---------------------------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------------------------


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True, max_length=128)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = json_column()
    consents: dict[str, Any] = json_column()
    created_at: datetime = time_column()
    updated_at: datetime = time_column()


class CustomerIn(BaseModel):
    """A profile upsert. Fields left out keep their stored value; `attributes` are merged key by key."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    email: EmailStr | None = None
    phone: Phone | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    attributes: JsonObject | None = None
    consents: dict[Text, bool] | None = None


# The customer id of an anonymous visitor: `anon:` and the browser's or device's anonymous id (Segment's
# `anonymousId`), a profile of its own until it is merged into the known customer (`Identity`).
ANONYMOUS_PREFIX = "anon:"


def is_anonymous(customer_id: str) -> bool:
    return customer_id.startswith(ANONYMOUS_PREFIX)


class Identity(SQLModel, table=True):
    """An anonymous visitor who became a known customer: `anon:<anonymousId>` → the customer's id.

    Kept after the merge, so an event still sent under the anonymous id (a batch the browser flushes late)
    and a journey that started while the visitor was anonymous reach the known customer."""

    __tablename__ = "identities"

    anonymous_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=128, index=True)
    merged_at: datetime = time_column()


class CustomerPublic(SQLModel):
    id: str
    email: str | None
    phone: str | None
    locale: str | None
    timezone: str | None
    attributes: dict[str, Any]
    consents: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------------------------------------------------
# Events and the outbox that relays them to Temporal
# ---------------------------------------------------------------------------------------------------------


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_customer_occurred", "customer_id", "occurred_at"),
        # Segment conditions count a customer's events of one name (within a window).
        Index("ix_events_customer_name_occurred", "customer_id", "name", "occurred_at"),
    )

    id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=128)
    name: str = Field(max_length=100, index=True)
    properties: dict[str, Any] = json_column()
    occurred_at: datetime = time_column()
    received_at: datetime = time_column()
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    customer_id: Identifier
    name: EventName
    properties: JsonObject = Field(default_factory=dict)
    timestamp: EventTime | None = None
    # Where it happened (ip, userAgent, locale, page, campaign, library), as Segment's libraries send it:
    # kept with the event for analytics, never handed to a journey.
    context: JsonObject | None = None

    def conflict_with(self, customer_id: str, name: str, properties: dict[str, Any]) -> str | None:
        """Why the stored event of this id is another event, or None when this one repeats it.

        An id names one event: the same customer, name and properties (the timestamp may differ, as a
        client's retry stamps it anew) is a repeat; anything else is a client reusing ids, refused.
        """
        if customer_id != self.customer_id:
            whose = "an event of another customer"
        elif name != self.name or properties != self.properties:
            whose = "an event with other content (name or properties)"
        else:
            return None
        return (
            f"event id {self.id!r} is taken by {whose}: an id names one event, so send this one "
            "with a new id (or exactly the stored event, to repeat it)"
        )


class EventPublic(SQLModel):
    id: str
    customer_id: str
    name: str
    properties: dict[str, Any]
    occurred_at: datetime
    received_at: datetime


class IngestStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # the id is taken by another event (another customer, name or properties)
    REJECTED = "rejected"


class Ingested(NamedTuple):
    """What storing one event came to; `reason` says why a conflict is one."""

    status: IngestStatus
    reason: str | None = None


# Plain pydantic models: a batch answer holds a thousand of these, and SQLModel's constructor is slower.
class EventAck(BaseModel):
    id: str
    status: IngestStatus


class BatchItemResult(BaseModel):
    index: int
    id: str | None
    status: IngestStatus
    errors: list[str] = []


class BatchAck(BaseModel):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[BatchItemResult]


class OutboxEntry(SQLModel, table=True):
    """An accepted event that still has to reach its journeys. Deleted once Temporal has it.

    `available_at` is when a relay may try it (later after a failure); one customer's entries go in `id`
    order, so an entry waiting out its back-off holds back the customer's later ones.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_customer_available", "customer_id", "available_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128, unique=True)
    customer_id: str = Field(max_length=128)
    attempts: int = 0
    available_at: datetime = time_column(index=True)
    last_error: str | None = Field(default=None, max_length=500)
    # The W3C traceparent of the request that accepted the event (tracing on): the relay continues its trace.
    trace_context: str | None = Field(default=None, max_length=64)


class RelayLease(SQLModel, table=True):
    """A customer whose outbox entries one relay is handing to Temporal: no other relay takes any of them
    until `until` (renewed while the relay's pass runs)."""

    __tablename__ = "relay_leases"

    customer_id: str = Field(primary_key=True, max_length=128)
    holder: str = Field(max_length=100)
    until: datetime = time_column()


class RateWindow(SQLModel, table=True):
    """Requests one API key made in one fixed window: shared by every API process."""

    __tablename__ = "rate_windows"

    key_id: str = Field(primary_key=True, max_length=16)
    window: int = Field(primary_key=True)  # window start, in seconds since the epoch
    count: int = 0


class Suppression(SQLModel, table=True):
    """An address that must not be used again on a channel (hard bounce, invalid number): kept as a hash."""

    __tablename__ = "suppressions"

    channel: str = Field(primary_key=True, max_length=32)
    address_hash: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=300)
    created_at: datetime = time_column()


# ---------------------------------------------------------------------------------------------------------
# Journeys and deliveries
# ---------------------------------------------------------------------------------------------------------


class JourneyEntry(SQLModel, table=True):
    """One customer's run through a journey, kept after Temporal's retention forgets it.

    `run_id` is the first run id of the workflow execution (stable across continue-as-new).
    """

    __tablename__ = "journey_entries"
    __table_args__ = (
        Index("ix_journey_entries_customer", "customer_id", "journey"),
        # The funnel rollups: a journey's runs by entry, and those that ended since a rollup was made.
        Index("ix_journey_entries_journey_entered", "journey", "entered_at", "status"),
        Index("ix_journey_entries_journey_ended", "journey", "ended_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=64, unique=True)
    workflow_id: str = Field(max_length=300, index=True)
    journey: str = Field(max_length=100, index=True)
    customer_id: str = Field(max_length=128)
    entry_key: str | None = Field(default=None, max_length=128)
    # The event that started the run: a relay retry of it after the run closed starts no second run.
    trigger_event_id: str | None = Field(default=None, max_length=128, index=True)
    status: JourneyStatus = Field(default=JourneyStatus.ACTIVE, sa_column=Column(String(16), nullable=False))
    entered_at: datetime = time_column()
    ended_at: datetime | None = time_column(nullable=True)
    ended_by: str | None = Field(default=None, max_length=100)


class DeliveryStatus(StrEnum):
    CLAIMED = "claimed"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"
    CAPPED = "capped"  # a marketing step over a frequency cap: not sent, the journey goes on


class Delivery(SQLModel, table=True):
    """One message step of one journey run; `key` is the business key that makes a send happen once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("key", name="uq_deliveries_key"),
        Index("ix_deliveries_customer_created", "customer_id", "created_at"),
        Index("ix_deliveries_journey_step", "journey", "step"),
        Index("ix_deliveries_provider_id", "provider_id"),
        # The funnel rollups: a journey's deliveries by creation, and those changed since a rollup was made.
        Index("ix_deliveries_journey_created", "journey", "created_at"),
        Index("ix_deliveries_journey_updated", "journey", "updated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400)
    journey: str = Field(max_length=100)
    step: str = Field(max_length=100)
    customer_id: str = Field(max_length=128)
    workflow_id: str = Field(max_length=300)
    stage: str | None = Field(default=None, max_length=32)
    variant: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=32)
    # The language the message was rendered in; a fallback when the customer's own had no template.
    locale: str | None = Field(default=None, max_length=35)
    locale_fallback: bool = False
    marketing: bool = True  # frequency caps count marketing deliveries only
    status: DeliveryStatus = Field(
        default=DeliveryStatus.CLAIMED, sa_column=Column(String(16), nullable=False)
    )
    # Set while an attempt is sending, renewed by its heartbeats: another attempt waits; an expired one means
    # a worker died mid-send. `send_token` counts the leases taken: only the current holder records a result.
    sending_until: datetime | None = time_column(nullable=True)
    send_token: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    provider_id: str | None = Field(default=None, max_length=300)
    error: str | None = Field(default=None, max_length=1000)
    attempts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONType))
    created_at: datetime = time_column()
    sent_at: datetime | None = time_column(nullable=True)
    # When the provider reported the message on the recipient's device (a Zalo delivery webhook).
    delivered_at: datetime | None = time_column(nullable=True)
    retry_at: datetime | None = time_column(nullable=True)
    updated_at: datetime = time_column()


class Engagement(SQLModel, table=True):
    """A customer opened or clicked a message: recorded by the tracking endpoints against its delivery."""

    __tablename__ = "engagements"
    # One open per delivery: mail clients and proxies fetch the pixel again and again.
    __table_args__ = (
        Index(
            "uq_engagements_one_open",
            "delivery_id",
            unique=True,
            sqlite_where=text("kind = 'open'"),
            postgresql_where=text("kind = 'open'"),
        ),
        Index("ix_engagements_at", "at"),  # what the funnel rollups must look at again
    )

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    kind: str = Field(max_length=8)  # "open" | "click"
    url: str | None = Field(default=None, max_length=2000)
    at: datetime = time_column()


class DeliveryPublic(SQLModel):
    id: int
    journey: str
    step: str
    stage: str | None
    variant: str | None
    channel: str | None
    locale: str | None = None
    locale_fallback: bool = False
    status: DeliveryStatus
    provider_id: str | None
    error: str | None
    attempts: list[dict[str, Any]]
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None = None


class StepFunnel(BaseModel):
    """One step of a journey's funnel: how many runs reached it and what became of their messages."""

    step: str
    stage: str
    channels: list[str]
    reached: int  # deliveries recorded for the step (every outcome)
    sent: int  # sent or delivered
    delivered: int  # the provider confirmed the device got it
    skipped: int
    failed: int
    capped: int
    deferred: int  # waiting for quiet hours or a provider's window to end
    opened: int  # sent messages opened at least once (email pixel, onsite read)
    clicked: int  # sent messages with at least one tracked link clicked
    dropped_before: int  # runs that entered but never reached this step (so far)
    by_channel: dict[str, int]  # sent, per channel
    by_variant: dict[str, int]  # sent, per A/B variant
    # Conversions credited to this step's messages (touchflow.attribution: last touch), and their revenue.
    attributed_conversions: int = 0
    revenue: float = 0.0
    # Of the runs that reached this step, the share that reached the next one (None for the last step).
    to_next: float | None = None
    # Why messages were not sent: {"skipped": {"no consent": 3}, "failed": {...}, "capped": {...}}.
    reasons: dict[str, dict[str, int]] = Field(default_factory=dict)


class VariantResult(BaseModel):
    variant: str
    sent: int
    opened: int
    clicked: int
    attributed_conversions: int
    revenue: float
    conversion_rate: float  # attributed conversions / sent


class ExperimentResult(BaseModel):
    """An A/B experiment of one step: its variants side by side and the test between the best two."""

    experiment: str
    step: str
    variants: list[VariantResult]
    test: str  # how the verdict was reached, in words
    z: float | None = None
    p_value: float | None = None
    winner: str | None = None  # only when the difference is significant (p < 0.05)


class JourneyFunnel(BaseModel):
    journey: str
    description: str
    entered: int
    active: int
    converted: int
    exited: int
    completed: int
    conversion_rate: float  # converted / entered
    stages: dict[str, int]  # sent messages per stage
    steps: list[StepFunnel]
    # Conversions (a goal, or order_placed) in the period credited to this journey's messages, last touch
    # within TOUCHFLOW_ATTRIBUTION_WINDOW (docs/insight.md#attribution), and the revenue they carried.
    attributed_conversions: int = 0
    revenue: float = 0.0
    experiments: list[ExperimentResult] = Field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None


class FunnelRollup(SQLModel, table=True):
    """A journey's deliveries of one hour (by creation), counted by step, status, channel, variant and reason:
    what the funnels read for past hours instead of the deliveries themselves (`storage.rollups`)."""

    __tablename__ = "funnel_rollups"
    __table_args__ = (Index("ix_funnel_rollups_journey_hour", "journey", "hour"),)

    id: int | None = Field(default=None, primary_key=True)
    journey: str = Field(max_length=100)
    hour: int  # hours since the epoch
    step: str = Field(max_length=100)
    status: str = Field(max_length=16)
    channel: str | None = Field(default=None, max_length=32)
    variant: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=1000)  # the error of a message not sent
    count: int
    opened: int
    clicked: int


class EntryRollup(SQLModel, table=True):
    """A journey's runs entered in one hour, by their status now (`storage.rollups`)."""

    __tablename__ = "entry_rollups"

    journey: str = Field(primary_key=True, max_length=100)
    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    status: str = Field(primary_key=True, max_length=16)
    count: int


class FunnelRollupHour(SQLModel, table=True):
    """When one hour of a journey was rolled up: a delivery, engagement or run of that hour changed since
    makes it stale."""

    __tablename__ = "funnel_rollup_hours"

    journey: str = Field(primary_key=True, max_length=100)
    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    computed_at: datetime = time_column()


class Attribution(SQLModel, table=True):
    """A conversion and the touchpoint credited with it (`touchflow.attribution`), kept once its event has
    settled, so the funnels read the credits instead of matching every conversion again; `delivery_id`
    None when nothing in the window was credited. Personal: erased with the customer's events."""

    __tablename__ = "attributions"
    __table_args__ = (Index("ix_attributions_journey_at", "journey", "at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=128, index=True)
    at: datetime = time_column(index=True)
    revenue: float
    delivery_id: int | None = None
    journey: str | None = Field(default=None, max_length=100)
    step: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=32)
    variant: str | None = Field(default=None, max_length=64)
    stage: str | None = Field(default=None, max_length=32)
    sent_at: datetime | None = time_column(nullable=True)


class AttributionState(SQLModel, table=True):
    """How far the kept attributions go (events received before `watermark`), and under which rule
    (`fingerprint` of the window and the journeys' goals: a change starts them over)."""

    __tablename__ = "attribution_state"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    fingerprint: str = Field(max_length=64)
    watermark: datetime | None = time_column(nullable=True)


class StageFunnel(BaseModel):
    """One stage across every journey and broadcast: messages sent, customers sent one, how many of those
    were also sent one of the next stage, and the conversions credited to the stage's messages."""

    stage: str
    touchpoints: int
    customers: int
    moved_on: int | None  # None for the last stage
    moved_on_rate: float | None
    attributed_conversions: int
    revenue: float


class TimelineItem(BaseModel):
    """One thing in a customer's timeline. `kind`: event, journey_entered, journey_ended, touchpoint,
    segment_entered, segment_exited (a segment named `lifecycle:<stage>` is a lifecycle-stage change)."""

    at: datetime
    kind: str
    name: str | None = None  # event
    properties: dict[str, Any] | None = None  # event
    journey: str | None = None  # journey_*, touchpoint
    workflow_id: str | None = None  # journey_*
    status: str | None = None  # journey_* (the run's status now), touchpoint (the delivery's)
    ended_by: str | None = None  # journey_ended
    step: str | None = None  # touchpoint
    stage: str | None = None  # touchpoint
    channel: str | None = None  # touchpoint
    variant: str | None = None  # touchpoint
    reason: str | None = None  # touchpoint: why it was not sent
    outcome: str | None = None  # touchpoint: converted, clicked, opened, or its status
    opened_at: datetime | None = None  # touchpoint
    clicks: int | None = None  # touchpoint
    segment: str | None = None  # segment_*
    lifecycle_stage: str | None = None  # segment_* of a lifecycle stage
    # A touchpoint credited with a conversion: the event id and revenue; a conversion: what it is credited to.
    conversion_event_id: str | None = None
    revenue: float | None = None
    attributed_to: dict[str, Any] | None = None


class Timeline(BaseModel):
    customer_id: str
    consents: dict[str, Any]
    lifecycle_stage: str | None
    segments: list[str]
    items: list[TimelineItem]  # newest first
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the older page.")


class Erasure(SQLModel):
    customer_id: str
    journeys_ended: int
    # Runs whose history Temporal deleted (every journey the customer was ever in, open or closed).
    histories_deleted: int = 0
    removed: dict[str, int]


class CustomerDetail(SQLModel):
    customer: CustomerPublic
    events: list[EventPublic]
    deliveries: list[DeliveryPublic]
    segments: list[str] = Field(default_factory=list)  # every segment they are in now, lifecycle stage too
    lifecycle_stage: str | None = None


# ---------------------------------------------------------------------------------------------------------
# Provider credentials that rotate
# ---------------------------------------------------------------------------------------------------------


class ZaloToken(SQLModel, table=True):
    """The Zalo OA token pair of one app. Refresh tokens are single-use: every refresh stores the new pair
    here (under a row lock) before anyone uses it, so all workers share one chain.

    `seed_hash` remembers which TOUCHFLOW_ZALO_REFRESH_TOKEN started the chain: a new seed restarts it.
    `held_until` pauses ZNS for the whole OA after a balance or payment error (`held_because`, Zalo's code):
    every worker sees it, so none asks Zalo again until then.
    """

    __tablename__ = "zalo_tokens"

    app_id: str = Field(primary_key=True, max_length=64)
    access_token: str | None = Field(default=None, max_length=2048)
    refresh_token: str = Field(max_length=2048)
    expires_at: datetime | None = time_column(nullable=True)
    seed_hash: str = Field(max_length=64)
    rotations: int = 0
    updated_at: datetime = time_column()
    held_until: datetime | None = time_column(nullable=True)
    held_because: str | None = Field(default=None, max_length=16)


# The onsite inbox
# ---------------------------------------------------------------------------------------------------------


class InboxMessage(SQLModel, table=True):
    """One message in a customer's onsite inbox; `key` is the delivery key, so a retried send stores once."""

    __tablename__ = "inbox_messages"
    __table_args__ = (
        UniqueConstraint("key", name="uq_inbox_messages_key"),
        Index("ix_inbox_messages_customer_created", "customer_id", "created_at"),
        Index("ix_inbox_messages_read_at", "read_at"),  # what the funnel rollups must look at again
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400)
    customer_id: str = Field(max_length=128)
    title: str = Field(max_length=200)
    body: str = Field(max_length=4000)
    action_url: str | None = Field(default=None, max_length=2000)
    created_at: datetime = time_column()
    seen_at: datetime | None = time_column(nullable=True)
    read_at: datetime | None = time_column(nullable=True)
    archived_at: datetime | None = time_column(nullable=True)


class InboxMessagePublic(SQLModel):
    id: int
    title: str
    body: str
    action_url: str | None
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None


class InboxPage(SQLModel):
    messages: list[InboxMessagePublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class InboxUnread(SQLModel):
    unread: int


class InboxUpdated(SQLModel):
    updated: int


class InboxToken(SQLModel):
    customer_id: str
    token: str


class InboxStreamTicket(SQLModel):
    ticket: str = Field(description="Opens `GET /v1/inbox/stream?ticket=…` for this customer.")
    expires_in: int = Field(description="Seconds the ticket may be used to open a stream.")


# ---------------------------------------------------------------------------------------------------------
# Coupons
# ---------------------------------------------------------------------------------------------------------


class Coupon(SQLModel, table=True):
    """A unique, single-use coupon a journey issued; `key` (the journey step's business key) makes issuing
    idempotent, `redeemed_at` is set once by the first `order_placed` that carries the code."""

    __tablename__ = "coupons"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True)
    code: str = Field(max_length=32, unique=True)
    customer_id: str = Field(max_length=128, index=True)
    journey: str = Field(max_length=100)
    entry_key: str | None = Field(default=None, max_length=128)
    value: float
    unit: str = Field(max_length=16)  # "percent" or a currency code
    expires_at: datetime = time_column()
    created_at: datetime = time_column()
    redeemed_at: datetime | None = time_column(nullable=True)
    redeemed_order_id: str | None = Field(default=None, max_length=128)
    redeemed_event_id: str | None = Field(default=None, max_length=128)


class CouponRedemption(SQLModel, table=True):
    """Every attempt to use a code, accepted or refused (and why): a code is applied once, never twice."""

    __tablename__ = "coupon_redemptions"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=128, unique=True)
    code: str = Field(max_length=32, index=True)
    coupon_id: int | None = Field(default=None)
    customer_id: str = Field(max_length=128)
    order_id: str | None = Field(default=None, max_length=128)
    accepted: bool
    reason: str | None = Field(default=None, max_length=200)
    at: datetime = time_column()


# ---------------------------------------------------------------------------------------------------------
# Web push subscriptions: one row per browser (device) a customer allowed to notify them
# ---------------------------------------------------------------------------------------------------------


class PushSubscription(SQLModel, table=True):
    """A browser's PushSubscription. The endpoint is a capability URL: treat it like a secret (no logs)."""

    __tablename__ = "push_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(max_length=128, index=True)
    endpoint: str = Field(max_length=1024, unique=True)
    p256dh: str = Field(max_length=100)
    auth: str = Field(max_length=50)
    user_agent: str | None = Field(default=None, max_length=512)
    expires_at: datetime | None = time_column(nullable=True)
    created_at: datetime = time_column()
    updated_at: datetime = time_column()
    last_success_at: datetime | None = time_column(nullable=True)
    # Consecutive failed sends (reset by a success); a subscription the service says is gone is deleted.
    failures: int = 0

    def to_json(self) -> dict[str, Any]:
        """The W3C `PushSubscription.toJSON()` shape: what a web push channel takes as its address."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _check_endpoint(value: str) -> str:
    # Its shape only: which hosts (and whether plain http) is a setting, checked by the route and the worker.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be the https URL of the browser's push service")
    return value


def _key_checker(size: int, what: str) -> Any:
    def check(value: str) -> str:
        raw = b64url_decode(value)
        if len(raw) != size or (size == 65 and raw[0] != 0x04):
            raise ValueError(f"must be base64url of {what} ({size} bytes), got {len(raw)} bytes")
        return value.rstrip("=")

    return check


PushEndpoint = Annotated[
    str,
    BeforeValidator(_check_text),
    StringConstraints(strip_whitespace=True, max_length=1024),
    AfterValidator(_check_endpoint),
]
P256dhKey = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=100),
    AfterValidator(_key_checker(65, "an uncompressed P-256 point")),
]
AuthSecret = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=50),
    AfterValidator(_key_checker(16, "the auth secret")),
]


class PushKeys(SQLModel):
    p256dh: Annotated[P256dhKey, BeforeValidator(_check_text)]
    auth: Annotated[AuthSecret, BeforeValidator(_check_text)]


class PushSubscriptionIn(SQLModel):
    """The JSON of a browser's `PushSubscription` (`subscription.toJSON()`), as the site's backend got it.

    Unknown fields are ignored rather than refused: the JSON is the browser's, and browsers may add fields.
    """

    endpoint: PushEndpoint
    expirationTime: Annotated[float, AllowInfNan(False)] | None = Field(
        default=None, ge=0, description="Milliseconds since the epoch, or null."
    )
    keys: PushKeys
    user_agent: Text | None = Field(
        default=None, max_length=512, description="The device, for your own display."
    )


class PushSubscriptionPublic(SQLModel):
    """A stored subscription as the API shows it: the endpoint's origin only, never its secret path."""

    id: int
    customer_id: str
    origin: str
    user_agent: str | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None
    failures: int

    @classmethod
    def of(cls, row: PushSubscription) -> PushSubscriptionPublic:
        parts = urlsplit(row.endpoint)
        return cls(
            id=row.id or 0,
            customer_id=row.customer_id,
            origin=f"{parts.scheme}://{parts.netloc}",
            user_agent=row.user_agent,
            expires_at=row.expires_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_success_at=row.last_success_at,
            failures=row.failures,
        )


# ---------------------------------------------------------------------------------------------------------
# Segments (touchflow.segments): API-defined definitions, kept memberships, and every entry and exit
# ---------------------------------------------------------------------------------------------------------


class SegmentRow(SQLModel, table=True):
    """A segment defined over the API (those declared in Python or built in live in code, not here)."""

    __tablename__ = "segments"

    name: str = Field(primary_key=True, max_length=64)
    description: str = Field(default="", max_length=500)
    condition: dict[str, Any] = json_column()
    created_at: datetime = time_column()
    updated_at: datetime = time_column()


class SegmentMembership(SQLModel, table=True):
    """A customer in a segment now, since `entered_at`; kept up to date as events and profiles change."""

    __tablename__ = "segment_memberships"

    segment: str = Field(primary_key=True, max_length=100)
    customer_id: str = Field(primary_key=True, max_length=128, index=True)
    entered_at: datetime = time_column()


class SegmentMovement(SQLModel, table=True):
    """One entry into or exit from a segment, at `at`: a segment's movement over time."""

    __tablename__ = "segment_movements"
    __table_args__ = (Index("ix_segment_movements_segment_at", "segment", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    segment: str = Field(max_length=100)
    customer_id: str = Field(max_length=128, index=True)
    entered: bool
    at: datetime = time_column()


class SegmentIn(BaseModel):
    """A segment over the API: `condition` is the JSON condition tree of docs/segments.md."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, StringConstraints(max_length=64)]
    description: Annotated[Text, StringConstraints(max_length=500)] = ""
    condition: JsonObject


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[Text, StringConstraints(max_length=500)] = ""
    condition: JsonObject


class SegmentPublic(BaseModel):
    name: str
    description: str
    condition: dict[str, Any]
    source: str  # api, python (a journey module), builtin (lifecycle stages)
    size: int | None = None


class SegmentMemberPublic(BaseModel):
    customer_id: str
    entered_at: datetime


class SegmentMovementPublic(BaseModel):
    customer_id: str
    entered: bool  # false: exited
    at: datetime


class SegmentMembersPage(BaseModel):
    members: list[SegmentMemberPublic]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------------------------
# Broadcasts: one message to an audience, sent by one workflow in batches (docs/broadcasts.md)
# ---------------------------------------------------------------------------------------------------------


class Broadcast(SQLModel, table=True):
    """A broadcast as it was asked for, and where it stands; what it sent is its deliveries'."""

    __tablename__ = "broadcasts"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=100)
    # {"segment": NAME} or {"customer_ids": [...]}: resolved into broadcast_recipients as sending starts.
    audience: dict[str, Any] = json_column()
    via: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Inline content per channel (parts, or parts per language); None when a template is named instead.
    content: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    template: str | None = Field(default=None, max_length=100)
    send_at: datetime | None = time_column(nullable=True)
    local_time: str | None = Field(default=None, max_length=5)
    rate: float | None = None
    status: BroadcastStatus = Field(
        default=BroadcastStatus.SCHEDULED, sa_column=Column(String(16), nullable=False)
    )
    # Recipients in the snapshot; None until it is taken.
    total: int | None = None
    created_at: datetime = time_column()
    updated_at: datetime = time_column()


class BroadcastRecipient(SQLModel, table=True):
    """A broadcast's audience as snapshotted: who, when (their local time), and in which batch."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (Index("ix_broadcast_recipients_batch", "broadcast_id", "due_at", "batch"),)

    broadcast_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(primary_key=True, max_length=128)
    due_at: datetime = time_column()
    batch: int = 0


_LOCAL_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class BroadcastCreate(SQLModel):
    """`POST /v1/broadcasts`: one message to a segment or a list of customers (docs/broadcasts.md)."""

    name: str = Field(min_length=1, max_length=100)
    segment: str | None = Field(default=None, min_length=1, max_length=100)
    customer_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )
    via: list[str] = Field(min_length=1, max_length=5)
    # {channel: {part: text}} or {channel: {language: {part: text}}}; parts are Jinja, as in templates.
    content: dict[str, dict[str, Any]] | None = None
    # templates/broadcasts/<template>.<channel>.<locale>.(html|txt), as a journey step's are.
    template: str | None = Field(default=None, min_length=1, max_length=100)
    send_at: datetime | None = None
    local_time: str | None = None
    rate: float | None = Field(default=None, gt=0, le=100_000)

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-24T09:00:00+07:00")
        return value

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9_]+", value):
            raise ValueError(
                "a template name is lower-case letters, digits and _ (templates/broadcasts/<name>...)"
            )
        return value

    @field_validator("local_time")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        if value is not None and not _LOCAL_TIME.fullmatch(value):
            raise ValueError("a time of day HH:MM, e.g. 09:00 (each recipient's own time zone)")
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> BroadcastCreate:
        if (self.segment is None) == (self.customer_ids is None):
            raise ValueError("give one audience: segment or customer_ids")
        if (self.content is None) == (self.template is None):
            raise ValueError("give the message one way: content (per channel) or template")
        if len(set(self.via)) != len(self.via):
            raise ValueError("via: each channel once")
        if self.content is not None:
            missing = [channel for channel in self.via if channel not in self.content]
            extra = [channel for channel in self.content if channel not in self.via]
            if missing or extra:
                raise ValueError(
                    f"content: one entry per channel of via ({', '.join(self.via)})"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; not in via: {', '.join(extra)}" if extra else "")
                )
            for channel, parts in self.content.items():
                nested = [isinstance(v, dict) for v in parts.values()]
                if not parts or (any(nested) and not all(nested)):
                    raise ValueError(
                        f"content.{channel}: parts ({{'subject': ..., 'text': ...}}) or parts per language "
                        "({'vi': {...}, 'en': {...}}), not both"
                    )
                for part_map in parts.values() if all(nested) else [parts]:
                    if not all(isinstance(t, str) for t in part_map.values()):
                        raise ValueError(f"content.{channel}: each part is a text (a Jinja template)")
        return self


class BroadcastFunnel(SQLModel):
    """What the recipients sent the broadcast did next (docs/broadcasts.md#funnel)."""

    opened: int = Field(description="Deliveries opened (the pixel; an onsite message read), each once.")
    clicked: int = Field(description="Deliveries with a tracked link clicked, each once.")
    converted: int = Field(
        description="Conversions credited to the broadcast: the attribution rule of journeys (last touch "
        "within `conversion_window`, TOUCHFLOW_ATTRIBUTION_WINDOW; docs/insight.md#attribution)."
    )
    revenue: float = Field(description="The `total` of the orders among those conversions.")
    conversion_window: timedelta


class BroadcastPublic(SQLModel):
    """A broadcast and what came of it so far: each recipient is sent, skipped (by reason), failed or
    pending; `funnel` in the answer about one broadcast (not in the list)."""

    id: str
    name: str
    status: BroadcastStatus
    audience: dict[str, Any]
    via: list[str]
    template: str | None
    send_at: datetime | None
    local_time: str | None
    rate: float | None
    total: int | None
    sent: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    failed: int = 0
    pending: int = 0
    funnel: BroadcastFunnel | None = None
    created_at: datetime
    updated_at: datetime


class BroadcastPage(SQLModel):
    broadcasts: list[BroadcastPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )
