"""The Segment Tracking API spec mapped onto touchflow: a Segment message (identify, track, page, screen,
group, alias) becomes a profile upsert, an event or an identity merge.

Pure translation, no I/O: the API route (`api/routes/segment.py`) reads and authenticates the request, this
module says what it means, the store applies it. Who is who:

- `userId` names a known customer: the customer id is the userId as sent.
- `anonymousId` alone names an anonymous visitor: the customer id is `anon:<anonymousId>` (ANONYMOUS_PREFIX),
  a profile of its own until an identify or alias with both ids merges it into the known customer.
- junk ids (`null`, `anonymous`, `0`, `-1`, empty, ...) name nobody: they count as absent, as Segment's
  identity resolution has it, so one "null" user never collects every visitor's history.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from touchflow.models import (
    ANONYMOUS_PREFIX,
    MAX_JSON_BYTES,
    MEASURED,
    RESERVED_EVENT_NAME,
    CustomerIn,
    EventIn,
    storable_text,
)

# Ids no person has: a client's placeholder, never a customer (compared lower-cased and stripped).
JUNK_IDS = frozenset(
    {"", "0", "-1", "null", "nil", "none", "undefined", "nan", "anonymous", "unknown", "[object object]"}
)
# Segment's reserved identify traits that are fields of the profile; every other trait goes to `attributes`.
PROFILE_TRAITS = {"email": "email", "phone": "phone", "timezone": "timezone", "locale": "locale"}
# Reserved traits kept in `attributes` under touchflow's names (templates read `customer.first_name`).
NAME_TRAITS = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "name": "name",
}


class MessageType(StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


# The browser library's short paths (`/v1/t`) name the same calls.
SHORT_PATHS = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
# A page or screen call is stored as an event of this name.
VIEW_EVENTS = {MessageType.PAGE: "page_viewed", MessageType.SCREEN: "screen_viewed"}


@dataclass(frozen=True)
class Merge:
    """Fold the anonymous profile `anonymous_id` (an `anon:` customer id) into the known customer."""

    index: int
    anonymous_id: str
    customer_id: str
    # An alias names the earlier id as sent: it may be a known customer's, and two known customers are
    # never merged.
    previous_id: str | None = None


@dataclass(frozen=True)
class Claim:
    """A message that speaks for a known customer (identify, group, alias): what a key that may sit in a
    browser page can change only for a customer not stored yet, or with the customer's `token` (the onsite
    inbox token of that id, sent as `context.touchflow_token`)."""

    index: int
    customer_id: str
    token: str | None


@dataclass(frozen=True)
class Dropped:
    """A message left out of an accepted request, and why (Segment drops bad items, it does not refuse)."""

    index: int
    reason: str
    # A fixed word for the logs: the reason may quote what was sent.
    code: str = "invalid"


@dataclass
class Translation:
    profiles: list[tuple[int, CustomerIn]] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    events: list[tuple[int, EventIn]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    def drop(self, index: int, reason: str, code: str = "invalid") -> None:
        self.dropped.append(Dropped(index, reason, code))

    def withdraw(self, index: int) -> None:
        """Leave out everything message `index` asked for (a claim it could not make)."""
        self.profiles = [(i, p) for i, p in self.profiles if i != index]
        self.merges = [m for m in self.merges if m.index != index]


class _Invalid(Exception):
    """A message that cannot be used; its text says why, its code names the kind for the logs."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.code = code


def translate(
    messages: Sequence[Any],
    *,
    received_at: datetime,
    sent_at: Any = None,
    context: Any = None,
    kind: MessageType | None = None,
    max_message_bytes: int | None = None,
) -> Translation:
    """What a request's messages mean, in order.

    `kind` is the call of a single-message endpoint (`/v1/track`); in a batch each message names its own
    `type`. `sent_at` and `context` are the batch's own: its `sentAt` corrects every item's clock, its
    `context` is merged under each item's. Unusable messages are dropped, each with its reason, and so is
    one over `max_message_bytes` (as JSON) when given: Segment's limit is per message.
    """
    result = Translation()
    batch_sent = _parse_time(sent_at)
    base_context = context if isinstance(context, dict) else {}
    raw_events: list[tuple[int, dict[str, Any]]] = []
    for index, message in enumerate(messages):
        try:
            if not isinstance(message, dict):
                raise _Invalid("a message is a JSON object", "not_an_object")
            if max_message_bytes is not None:
                # As sent: UTF-8, not the ASCII escapes json.dumps writes for Vietnamese text by default.
                text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > max_message_bytes:
                    raise _Invalid(
                        f"{size} bytes, over {max_message_bytes} (TOUCHFLOW_TRACK_MAX_MESSAGE_BYTES)",
                        "too_large",
                    )
            _translate_one(index, message, kind, received_at, batch_sent, base_context, result, raw_events)
        except _Invalid as exc:
            result.drop(index, str(exc), exc.code)
    measured = max_message_bytes is not None and max_message_bytes <= MAX_JSON_BYTES
    result.events = _validate_events(raw_events, result, MEASURED if measured else None)
    return result


def _translate_one(
    index: int,
    message: dict[str, Any],
    kind: MessageType | None,
    received_at: datetime,
    batch_sent: datetime | None,
    base_context: dict[str, Any],
    result: Translation,
    raw_events: list[tuple[int, dict[str, Any]]],
) -> None:
    call = kind or _message_type(message.get("type"))
    user_id = _customer_id(_id(message.get("userId"), "userId"), "userId")
    anonymous_id = _id(message.get("anonymousId"), "anonymousId")
    if anonymous_id is not None:
        _customer_id(ANONYMOUS_PREFIX + anonymous_id, "anonymousId")
    context = (
        {**base_context, **message["context"]} if isinstance(message.get("context"), dict) else base_context
    )
    token = context.get(TOKEN_FIELD)
    if TOKEN_FIELD in context:
        context = {name: value for name, value in context.items() if name != TOKEN_FIELD}
    if user_id is not None and call in (MessageType.IDENTIFY, MessageType.GROUP, MessageType.ALIAS):
        result.claims.append(Claim(index, user_id, token if isinstance(token, str) else None))

    if call is MessageType.ALIAS:
        previous = _id(message.get("previousId"), "previousId")
        if user_id is None or previous is None:
            raise _Invalid("an alias call needs both userId and previousId", "no_id")
        _customer_id(ANONYMOUS_PREFIX + previous, "previousId")
        if previous != user_id:
            result.merges.append(Merge(index, ANONYMOUS_PREFIX + previous, user_id, previous_id=previous))
        return
    if user_id is None and anonymous_id is None:
        raise _Invalid(
            "needs a userId or an anonymousId (placeholders such as 'null' or '0' name nobody)", "no_id"
        )
    customer_id = user_id if user_id is not None else ANONYMOUS_PREFIX + str(anonymous_id)

    if call is MessageType.IDENTIFY:
        # The merge stands even when the traits cannot be used: who the visitor is matters more.
        if user_id is not None and anonymous_id is not None:
            result.merges.append(Merge(index, ANONYMOUS_PREFIX + anonymous_id, user_id))
        traits = _object(message.get("traits")) or _object(context.get("traits"))
        result.profiles.append((index, _profile(customer_id, traits, context)))
        return
    if call is MessageType.GROUP:
        group_id = _id(message.get("groupId"), "groupId")
        if group_id is None:
            raise _Invalid("a group call needs a groupId", "no_id")
        group = {"id": group_id, **_clean(_object(message.get("traits")))}
        result.profiles.append((index, _valid_profile({"id": customer_id, "attributes": {"group": group}})))
        return

    properties = _object(message.get("properties"))
    if call is MessageType.TRACK:
        name = message.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _Invalid("a track call needs an `event` name", "no_event_name")
    else:
        name = VIEW_EVENTS[call]
        # The page's own name and category, as analytics.js puts them beside the properties.
        for extra in ("name", "category"):
            if isinstance(message.get(extra), str) and extra not in properties:
                properties = {**properties, extra: message[extra]}
    raw_events.append(
        (
            index,
            {
                "id": _event_id(message),
                "customer_id": customer_id,
                "name": name,
                "properties": properties,
                "timestamp": _corrected_time(message, received_at, batch_sent),
                "context": _clean(context) if context else None,
            },
        )
    )


_EVENTS = TypeAdapter(list[EventIn])


def _validate_events(
    raw: list[tuple[int, dict[str, Any]]], result: Translation, context: dict[str, Any] | None
) -> list[tuple[int, EventIn]]:
    """The events in one validation pass, item by item only when some are bad (as `/v1/events/batch`)."""
    try:
        events = _EVENTS.validate_python([e for _, e in raw], context=context)
        return list(zip((i for i, _ in raw), events, strict=True))
    except ValidationError:
        pass
    valid = []
    for index, event in raw:
        try:
            valid.append((index, EventIn.model_validate(event, context=context)))
        except ValidationError as exc:
            reserved = exc.errors()[0]["type"] == RESERVED_EVENT_NAME
            result.drop(index, _first_error(exc), "reserved_name" if reserved else "invalid")
    return valid


def _profile(customer_id: str, traits: dict[str, Any], context: Mapping[str, Any]) -> CustomerIn:
    """identify's traits on a profile: reserved traits to fields, names under touchflow's keys, the rest to
    `attributes`. A reserved trait that does not validate (an email without @) is kept as an attribute
    instead of costing the whole identify."""
    profile: dict[str, Any] = {"id": customer_id}
    attributes: dict[str, Any] = {}
    for trait, value in _clean(traits).items():
        if trait in PROFILE_TRAITS:
            profile[PROFILE_TRAITS[trait]] = value
        elif trait in NAME_TRAITS:
            attributes[NAME_TRAITS[trait]] = value
        else:
            attributes[trait] = value
    for field_name in ("locale", "timezone"):
        if field_name not in profile and isinstance(context.get(field_name), str):
            profile[field_name] = context[field_name]
    if attributes:
        profile["attributes"] = attributes
    try:
        return CustomerIn.model_validate(profile)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        for name in bad & set(PROFILE_TRAITS.values()):
            value = profile.pop(name)
            if name not in ("locale", "timezone") or name in traits:
                attributes[name] = value
        if attributes:
            profile["attributes"] = attributes
        return _valid_profile(profile)


def _valid_profile(profile: dict[str, Any]) -> CustomerIn:
    try:
        return CustomerIn.model_validate(profile)
    except ValidationError as exc:
        raise _Invalid(_first_error(exc)) from None


def _message_type(value: Any) -> MessageType:
    try:
        return MessageType(value)
    except ValueError:
        raise _Invalid(
            "`type` must be one of identify, track, page, screen, group, alias; "
            f"this message has {json.dumps(value)[:40]}",
            "bad_type",
        ) from None


def _customer_id(value: str | None, name: str) -> str | None:
    """`value` if it can be a customer id (1 to 128 characters, no whitespace, `/`, `?` or `#`)."""
    if value is None:
        return None
    if not _USABLE_ID.fullmatch(value):
        raise _Invalid(
            f"{name} cannot name a customer: ids are 1 to 128 characters without whitespace, '/', '?' or "
            f"'#' (this one has {len(value)})",
            "bad_id",
        )
    if name == "userId" and value.startswith(ANONYMOUS_PREFIX):
        raise _Invalid(
            f"a userId must not start with {ANONYMOUS_PREFIX!r}: that names anonymous visitors", "bad_id"
        )
    return value


def _clean(value: Any) -> Any:
    """JSON as sent, with the text no database stores (NUL, a lone surrogate, as a page title cut mid-emoji
    gives) replaced by U+FFFD: context and traits are kept for reference, not worth losing the message for."""
    if isinstance(value, str):
        if storable_text(value):
            return value
        return "".join("\ufffd" if c == "\0" or "\ud800" <= c <= "\udfff" else c for c in value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _id(value: Any, name: str) -> str | None:
    """An id as text (numbers as written), or None for a missing or placeholder one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _Invalid(f"{name} must be a string or a whole number", "bad_id")
        value = str(int(value))
    if not isinstance(value, str):
        raise _Invalid(f"{name} must be a string or a number, not {type(value).__name__}", "bad_id")
    text = value.strip()
    if text.lower() in JUNK_IDS:
        return None
    if not storable_text(text):
        raise _Invalid(f"{name} holds a NUL character or a lone surrogate; no database stores it", "bad_id")
    return text


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# Where a page puts the customer's token to speak for them with a browser key (`Claim`).
TOKEN_FIELD = "touchflow_token"
_USABLE_ID = re.compile(r"[^\s/?#\x00-\x1f\x7f]{1,128}")


def _event_id(message: dict[str, Any]) -> str:
    """The `messageId` is the idempotency key; one that cannot be an event id (too long, spaces) is hashed,
    and a message without one is keyed by its content, so a resend is still stored once."""
    message_id = message.get("messageId")
    if isinstance(message_id, str) and _USABLE_ID.fullmatch(message_id):
        return message_id
    seed = message_id if isinstance(message_id, str) else json.dumps(message, sort_keys=True, default=str)
    return "seg-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as Segment's libraries write it; a time without a zone is UTC, as Segment reads it."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _corrected_time(message: dict[str, Any], received_at: datetime, batch_sent: datetime | None) -> datetime:
    """When it happened by our clock: `receivedAt - (sentAt - timestamp)` (the client's clock may be off by
    hours; the difference between its two readings is not). Without a usable timestamp: when received."""
    moment = _parse_time(message.get("timestamp")) or _parse_time(message.get("originalTimestamp"))
    if moment is None:
        return received_at
    sent = batch_sent or _parse_time(message.get("sentAt"))
    if sent is not None:
        try:
            moment = received_at - (sent - moment)
        except OverflowError:
            raise _Invalid(
                "timestamp and sentAt are too far apart to be times of one message", "bad_timestamp"
            ) from None
    return moment


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
