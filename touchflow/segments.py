"""Segments: the condition language (one meaning, two front ends), the definitions, and the lifecycle stages.

A condition is a tree of typed nodes. The API sends it as JSON (`parse_condition`, 422 naming the bad node's
path); a journey module builds the same nodes in Python (`Attribute("city") == "Hà Nội" & Event(...)...`).
Either way `to_json()` gives the one canonical tree, and storage turns that tree into SQL
(`touchflow.storage.segments`), so a segment means the same whoever wrote it. docs/segments.md has it all.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

from touchflow.errors import InvalidInput, TouchflowError
from touchflow.settings import Settings, to_timedelta

ATTRIBUTE_OPS = ("eq", "ne", "in", "contains", "exists", "gt", "gte", "lt", "lte")
RELATIVE_OPS = ("older_than", "newer_than")
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
CHANNELS = ("email", "web_push", "zalo_zns", "onsite")
TOPICS = ("marketing", "transactional")
STAGES = ("new_lead", "engaged", "customer", "repeat_customer", "lapsed")
ANY_EVENT = "*"
ENTERED_PREFIX = "segment_entered:"
EXITED_PREFIX = "segment_exited:"
LIFECYCLE_PREFIX = "lifecycle:"
_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}")

Scalar: TypeAlias = str | int | float | bool


class SegmentConflict(TouchflowError):
    """A segment name taken already, or a segment the API may not change (declared in Python, built in)."""

    http_status = 409


# ---------------------------------------------------------------------------------------------------------
# The nodes
# ---------------------------------------------------------------------------------------------------------


class Node(ABC):
    """A condition; `&`, `|` and `~` compose them (all, any, not)."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON condition tree this node stands for (docs/segments.md)."""

    def __and__(self, other: Node) -> All:
        return All((*_flat(self, All), *_flat(other, All)))

    def __or__(self, other: Node) -> AnyOf:
        return AnyOf((*_flat(self, AnyOf), *_flat(other, AnyOf)))

    def __invert__(self) -> Not:
        return Not(self)


def _flat(node: Node, kind: type[All] | type[AnyOf]) -> tuple[Node, ...]:
    return node.parts if isinstance(node, kind) else (node,)


@dataclass(frozen=True)
class All(Node):
    parts: tuple[Node, ...]

    def to_json(self) -> dict[str, Any]:
        return {"all": [part.to_json() for part in self.parts]}


@dataclass(frozen=True)
class AnyOf(Node):
    parts: tuple[Node, ...]

    def to_json(self) -> dict[str, Any]:
        return {"any": [part.to_json() for part in self.parts]}


@dataclass(frozen=True)
class Not(Node):
    part: Node

    def to_json(self) -> dict[str, Any]:
        return {"not": self.part.to_json()}


@dataclass(frozen=True)
class Compare(Node):
    """A profile attribute (`kind="attribute"`) or an event property (`kind="property"`, inside `where`).

    `op` is one of ATTRIBUTE_OPS or RELATIVE_OPS; `value` a scalar, a list (`in`), a bool (`exists`) or a
    duration (`older_than`/`newer_than`: the date is older / newer than now minus it)."""

    kind: Literal["attribute", "property"]
    key: str
    op: str
    value: Any = True

    def to_json(self) -> dict[str, Any]:
        if self.op in RELATIVE_OPS:
            return {self.kind: self.key, self.op: _duration_text(self.value)}
        if self.op == "exists" and self.value is True:
            return {self.kind: self.key, "op": "exists"}
        return {
            self.kind: self.key,
            "op": self.op,
            "value": list(self.value) if self.op == "in" else self.value,
        }


@dataclass(frozen=True)
class EventCondition(Node):
    """How often (or, with `sum`, how much of a property) the customer did `event`, within a window."""

    event: str
    count: tuple[tuple[str, float], ...] = (("gte", 1),)
    within: timedelta | None = None
    where: tuple[Compare, ...] = ()
    sum: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event}
        comparison = {op: _number_text(value) for op, value in self.count}
        if self.sum is None:
            out["count"] = comparison
        else:
            out["sum"], out["value"] = self.sum, comparison
        if self.within is not None:
            out["within"] = _duration_text(self.within)
        if self.where:
            out["where"] = [part.to_json() for part in self.where]
        return out


@dataclass(frozen=True)
class Reachable(Node):
    """Has an address on `channel` and may get `topic` there (the consent rules of `activities.policy`)."""

    channel: str
    topic: str = "marketing"

    def to_json(self) -> dict[str, Any]:
        return {"reachable": self.channel, **({"topic": self.topic} if self.topic != "marketing" else {})}


@dataclass(frozen=True)
class InSegment(Node):
    segment: str

    def to_json(self) -> dict[str, Any]:
        return {"segment": self.segment}


@dataclass(frozen=True)
class Lifecycle(Node):
    stage: str

    def to_json(self) -> dict[str, Any]:
        return {"lifecycle": self.stage}


def _duration_text(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _number_text(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# ---------------------------------------------------------------------------------------------------------
# The JSON front end
# ---------------------------------------------------------------------------------------------------------


MAX_DEPTH = 16


def parse_condition(data: Any, path: str = "condition") -> Node:
    """The typed tree of a JSON condition; InvalidInput names the bad node's path (`condition.all[1]`)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: a condition is a JSON object, got {type(data).__name__}")
    if path.count(".") > MAX_DEPTH:
        raise InvalidInput(f"{path}: conditions nest at most {MAX_DEPTH} deep")
    if "all" in data or "any" in data:
        kind = "all" if "all" in data else "any"
        _only(data, {kind}, path)
        items = data[kind]
        if not isinstance(items, list) or not items:
            raise InvalidInput(f"{path}.{kind}: a non-empty list of conditions")
        parts = tuple(parse_condition(item, f"{path}.{kind}[{i}]") for i, item in enumerate(items))
        return All(parts) if kind == "all" else AnyOf(parts)
    if "not" in data:
        _only(data, {"not"}, path)
        return Not(parse_condition(data["not"], f"{path}.not"))
    if "attribute" in data:
        return _parse_compare(data, "attribute", path)
    if "event" in data:
        return _parse_event(data, path)
    if "reachable" in data:
        _only(data, {"reachable", "topic"}, path)
        channel, topic = data["reachable"], data.get("topic", "marketing")
        if channel not in CHANNELS:
            raise InvalidInput(f"{path}.reachable: one of {', '.join(CHANNELS)}, got {channel!r}")
        if topic not in TOPICS:
            raise InvalidInput(f"{path}.topic: one of {', '.join(TOPICS)}, got {topic!r}")
        return Reachable(channel, topic)
    if "segment" in data:
        _only(data, {"segment"}, path)
        return InSegment(segment_name(data["segment"], f"{path}.segment", reference=True))
    if "lifecycle" in data:
        _only(data, {"lifecycle"}, path)
        if data["lifecycle"] not in STAGES:
            raise InvalidInput(f"{path}.lifecycle: one of {', '.join(STAGES)}, got {data['lifecycle']!r}")
        return Lifecycle(data["lifecycle"])
    raise InvalidInput(
        f"{path}: a condition has one of the keys all, any, not, attribute, event, reachable, segment, "
        f"lifecycle; got {sorted(data)}"
    )


def _only(data: dict[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise InvalidInput(f"{path}: unknown key(s) {extra}; this node takes {sorted(allowed)}")


def _parse_compare(data: dict[str, Any], kind: Literal["attribute", "property"], path: str) -> Compare:
    key = data[kind]
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInput(f"{path}.{kind}: a name of letters, digits, _ or - (up to 64), got {key!r}")
    relative = [op for op in RELATIVE_OPS if op in data]
    if relative:
        _only(data, {kind, relative[0]}, path)
        return Compare(kind, key, relative[0], _duration(data[relative[0]], f"{path}.{relative[0]}"))
    _only(data, {kind, "op", "value"}, path)
    op = data.get("op")
    if op not in ATTRIBUTE_OPS:
        raise InvalidInput(
            f'{path}.op: one of {", ".join(ATTRIBUTE_OPS)} (or older_than/newer_than: "30d"), got {op!r}'
        )
    if op == "exists":
        value = data.get("value", True)
        if not isinstance(value, bool):
            raise InvalidInput(f"{path}.value: exists takes true or false, got {value!r}")
        return Compare(kind, key, op, value)
    if "value" not in data:
        raise InvalidInput(f"{path}.value: {op} needs a value")
    value = data["value"]
    if op == "in":
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            raise InvalidInput(f"{path}.value: in takes a non-empty list of strings, numbers or booleans")
        return Compare(kind, key, op, tuple(value))
    if not _is_scalar(value):
        raise InvalidInput(f"{path}.value: a string, number or boolean, got {type(value).__name__}")
    if op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise InvalidInput(f"{path}.value: {op} compares numbers or ISO 8601 dates, not booleans")
    return Compare(kind, key, op, value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float) and not (isinstance(value, float) and value != value)


def _parse_event(data: dict[str, Any], path: str) -> EventCondition:
    _only(data, {"event", "count", "within", "where", "sum", "value"}, path)
    name = data["event"]
    if not isinstance(name, str) or not name or len(name) > 100:
        raise InvalidInput(f'{path}.event: an event name (up to 100 characters) or "*" for any event')
    total = data.get("sum")
    if total is not None:
        if "count" in data:
            raise InvalidInput(f"{path}: give count or sum (with value), not both")
        if not isinstance(total, str) or not _KEY.fullmatch(total):
            raise InvalidInput(f"{path}.sum: the name of a numeric property, got {total!r}")
        count = _comparison(data.get("value"), f"{path}.value")
    else:
        if "value" in data:
            raise InvalidInput(f"{path}.value: only with sum; a count is compared with count")
        count = _comparison(data.get("count", {"gte": 1}), f"{path}.count")
    within = None if data.get("within") is None else _duration(data["within"], f"{path}.within")
    where = data.get("where", [])
    if isinstance(where, dict):
        where = [where]
    if not isinstance(where, list):
        raise InvalidInput(f"{path}.where: a list of property conditions")
    parsed = []
    for i, item in enumerate(where):
        if not isinstance(item, dict) or "property" not in item:
            raise InvalidInput(f'{path}.where[{i}]: {{"property": NAME, "op": ..., "value": ...}}')
        parsed.append(_parse_compare(item, "property", f"{path}.where[{i}]"))
    return EventCondition(name, count, within, tuple(parsed), total)


def _comparison(data: Any, path: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f'{path}: an object of comparisons, such as {{"gte": 2}} or {{"eq": 0}}')
    out = []
    for op, value in data.items():
        if op not in COMPARISONS:
            raise InvalidInput(f"{path}.{op}: one of {', '.join(COMPARISONS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise InvalidInput(f"{path}.{op}: a number, got {value!r}")
        out.append((op, float(value)))
    return tuple(out)


def _duration(value: Any, path: str) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f'{path}: a duration such as "30d", "12h" or "PT1H"')
    try:
        duration = to_timedelta(value)
    except ValueError as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    if duration <= timedelta(0):
        raise InvalidInput(f"{path}: a positive duration")
    return duration


def segment_name(value: Any, path: str, *, reference: bool = False) -> str:
    if isinstance(value, str) and (_NAME.fullmatch(value) or (reference and _is_lifecycle(value))):
        return value
    raise InvalidInput(
        f"{path}: lower-case letters, digits, _ and - (up to 64, starting with a letter or digit)"
    )


def _is_lifecycle(name: str) -> bool:
    return name.startswith(LIFECYCLE_PREFIX) and name[len(LIFECYCLE_PREFIX) :] in STAGES


# ---------------------------------------------------------------------------------------------------------
# The Python front end
# ---------------------------------------------------------------------------------------------------------


class _Field:
    """`Attribute("city") == "Hà Nội"`: comparisons make `Compare` nodes."""

    kind: Literal["attribute", "property"]

    def __init__(self, key: str) -> None:
        self.key = key

    def _node(self, op: str, value: Any) -> Compare:
        return _parse_compare(Compare(self.kind, self.key, op, value).to_json(), self.kind, self.key)

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return self._node("eq", value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return self._node("ne", value)

    def __gt__(self, value: Scalar) -> Compare:
        return self._node("gt", value)

    def __ge__(self, value: Scalar) -> Compare:
        return self._node("gte", value)

    def __lt__(self, value: Scalar) -> Compare:
        return self._node("lt", value)

    def __le__(self, value: Scalar) -> Compare:
        return self._node("lte", value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Iterable[Scalar]) -> Compare:
        return self._node("in", tuple(values))

    def contains(self, value: Scalar) -> Compare:
        return self._node("contains", value)

    def exists(self, present: bool = True) -> Compare:
        return self._node("exists", present)

    def older_than(self, duration: str | timedelta) -> Compare:
        return Compare(self.kind, self.key, "older_than", _duration(_text_of(duration), self.key))

    def newer_than(self, duration: str | timedelta) -> Compare:
        return Compare(self.kind, self.key, "newer_than", _duration(_text_of(duration), self.key))


def _text_of(duration: str | timedelta) -> str:
    return duration if isinstance(duration, str) else _duration_text(duration)


class Attribute(_Field):
    """A profile attribute: `Attribute("city") == "Hà Nội"`, `Attribute("signed_up_at").older_than("30d")`."""

    kind = "attribute"


class Property(_Field):
    """An event property, for `Event(..., where=...)`: `Property("total") >= 500_000`."""

    kind = "property"


class Event:
    """Event history: `Event("order_placed", within="90d").count(gte=2)`, `.sum("total", gte=5e6)`,
    `.performed()`, `.not_performed()`; `where=` takes property conditions (one, or a list)."""

    def __init__(
        self, name: str, *, within: str | timedelta | None = None, where: Compare | Sequence[Compare] = ()
    ) -> None:
        self.name = name
        self.within = within
        self.where = (where,) if isinstance(where, Compare) else tuple(where)

    def _node(self, comparison: Mapping[str, float], total: str | None = None) -> EventCondition:
        data: dict[str, Any] = {"event": self.name, "where": [part.to_json() for part in self.where]}
        if self.within is not None:
            data["within"] = _text_of(self.within)
        if total is None:
            data["count"] = dict(comparison)
        else:
            data["sum"], data["value"] = total, dict(comparison)
        return _parse_event(data, f"Event({self.name!r})")

    def count(self, **comparison: float) -> EventCondition:
        return self._node(comparison)

    def sum(self, prop: str, **comparison: float) -> EventCondition:
        return self._node(comparison, prop)

    def performed(self) -> EventCondition:
        return self._node({"gte": 1})

    def not_performed(self) -> EventCondition:
        return self._node({"eq": 0})


def reachable(channel: str, topic: str = "marketing") -> Reachable:
    """Reachable on `channel` for `topic`: `reachable("email")`."""
    node = parse_condition({"reachable": channel, "topic": topic}, "reachable")
    assert isinstance(node, Reachable)
    return node


def in_segment(name: str) -> InSegment:
    return InSegment(segment_name(name, "in_segment", reference=True))


def lifecycle(stage: str) -> Lifecycle:
    node = parse_condition({"lifecycle": stage}, "lifecycle")
    assert isinstance(node, Lifecycle)
    return node


# ---------------------------------------------------------------------------------------------------------
# Definitions, journey triggers, lifecycle
# ---------------------------------------------------------------------------------------------------------

Source = Literal["api", "python", "builtin"]


@dataclass(frozen=True)
class SegmentDefinition:
    name: str
    condition: Node
    description: str = ""
    source: Source = "python"

    def events(self) -> frozenset[str]:
        """The event names whose arrival may change this segment's condition (`*`: any event)."""
        return frozenset(_events(self.condition))

    def profile(self) -> bool:
        """Whether a profile change (attributes, contact, consents, devices) may change it."""
        return _uses_profile(self.condition)

    def references(self) -> frozenset[str]:
        """Segments this one's condition names (lifecycle stages are `lifecycle:<stage>`)."""
        return frozenset(_references(self.condition))


def segment(name: str, where: Node, *, description: str = "") -> SegmentDefinition:
    """Declare a segment in a journey module (`TOUCHFLOW_JOURNEYS`): the registry collects it.

    hanoi_repeat = segment("hanoi_repeat", Attribute("city") == "Hà Nội"
                           & Event("order_placed", within="90d").count(gte=2))
    """
    if not isinstance(where, Node):
        raise TypeError(f"segment {name!r}: where= takes a condition (Attribute(...) == ..., Event(...)...)")
    return SegmentDefinition(segment_name(name, f"segment {name!r}"), where, description, "python")


def _walk(node: Node) -> Iterable[Node]:
    yield node
    if isinstance(node, All | AnyOf):
        for part in node.parts:
            yield from _walk(part)
    elif isinstance(node, Not):
        yield from _walk(node.part)


def _events(node: Node) -> Iterable[str]:
    for part in _walk(node):
        if isinstance(part, EventCondition):
            yield part.event
        elif isinstance(part, Reachable):
            yield "unsubscribed"  # an ingest rule withdraws consents on it


def _uses_profile(node: Node) -> bool:
    return any(isinstance(part, Compare | Reachable) for part in _walk(node))


def _references(node: Node) -> Iterable[str]:
    for part in _walk(node):
        if isinstance(part, InSegment):
            yield part.segment
        elif isinstance(part, Lifecycle):
            yield LIFECYCLE_PREFIX + part.stage


# Which way new events can move a condition: UP (false to true only), DOWN (true to false only), both, or
# neither (0). An ingest re-evaluates a segment for a customer only where it could move: a member of a
# segment that new events can only move UP stays a member, whatever they were. Time passing is not counted:
# what moves with time alone is the refresh's job.
UP, DOWN = 1, 2
_COUNT_MOVES = {"gt": UP, "gte": UP, "lt": DOWN, "lte": DOWN}  # as the count grows


def moves_with(node: Node, names: Collection[str], definitions: Mapping[str, SegmentDefinition]) -> int:
    """Which way events named `names` (more of them, arriving now) can move `node`, references included."""
    if isinstance(node, All | AnyOf):
        found = 0
        for part in node.parts:
            found |= moves_with(part, names, definitions)
        return found
    if isinstance(node, Not):
        inner = moves_with(node.part, names, definitions)
        return (UP if inner & DOWN else 0) | (DOWN if inner & UP else 0)
    if isinstance(node, InSegment | Lifecycle):
        name = node.segment if isinstance(node, InSegment) else LIFECYCLE_PREFIX + node.stage
        return moves_with(definitions[name].condition, names, definitions) if name in definitions else 0
    if isinstance(node, Reachable):
        return DOWN if "unsubscribed" in names else 0  # the ingest rule only ever withdraws a consent
    if isinstance(node, EventCondition):
        if node.event == ANY_EVENT:
            counted = any(not n.startswith((ENTERED_PREFIX, EXITED_PREFIX)) for n in names)
        else:
            counted = node.event in names
        if not counted:
            return 0
        if node.sum is not None:
            return UP | DOWN  # a property may be negative
        found = 0
        for op, n in node.count:
            found |= {"gt": UP, "gte": UP, "lt": DOWN, "lte": DOWN}.get(
                op, DOWN if op == "eq" and n == 0 else UP | DOWN
            )
        return found
    return 0  # a profile attribute: events do not change it


@dataclass(frozen=True)
class Move:
    """A customer entering (`entered=True`) or leaving a segment."""

    segment: str
    customer_id: str
    entered: bool

    @property
    def event_name(self) -> str:
        return (ENTERED_PREFIX if self.entered else EXITED_PREFIX) + self.segment


def segment_event_id(move: Move, now: datetime) -> str:
    """A move's derived event id: one per move (a customer may enter the same segment again later)."""
    digest = hashlib.sha256(f"{move.event_name}\0{move.customer_id}\0{now.isoformat()}".encode()).hexdigest()
    return f"segment:{digest[:40]}"


class SegmentEntered(str):
    """`starts_on=SegmentEntered("vip")`: the event `segment_entered:vip`, recorded when a customer enters."""

    def __new__(cls, name: str) -> SegmentEntered:
        return super().__new__(cls, ENTERED_PREFIX + name)


class SegmentExited(str):
    """`ends_on=(SegmentExited("vip"),)`: the event `segment_exited:vip`, recorded when a customer leaves."""

    def __new__(cls, name: str) -> SegmentExited:
        return super().__new__(cls, EXITED_PREFIX + name)


@dataclass(frozen=True)
class LifecycleRules:
    """The built-in stages, one segment each (`lifecycle:<stage>`), exactly one of them per profile:

    lapsed           ordered before, but not within `lapsed_after`
    repeat_customer  2+ orders, the last within `lapsed_after`
    customer         1 order, within `lapsed_after`
    engaged          no order, any event within `engaged_within`
    new_lead         no order, no event within `engaged_within`
    """

    order_event: str = "order_placed"
    engaged_within: timedelta = timedelta(days=30)
    lapsed_after: timedelta = timedelta(days=90)
    definitions: tuple[SegmentDefinition, ...] = field(init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecycleRules:
        """TOUCHFLOW_LIFECYCLE_ORDER_EVENT, _ENGAGED_WITHIN, _LAPSED_AFTER."""
        return cls(
            settings.lifecycle_order_event, settings.lifecycle_engaged_within, settings.lifecycle_lapsed_after
        )

    def __post_init__(self) -> None:
        ordered = EventCondition(self.order_event)
        never = EventCondition(self.order_event, (("eq", 0),))
        recent = EventCondition(self.order_event, within=self.lapsed_after)
        twice = EventCondition(self.order_event, (("gte", 2),))
        active = EventCondition(ANY_EVENT, within=self.engaged_within)
        rules = {
            "new_lead": (never & ~active, "no order, and no event within the engaged window"),
            "engaged": (never & active, "no order yet, but active within the engaged window"),
            "customer": (ordered & ~twice & recent, "one order, within the lapse window"),
            "repeat_customer": (twice & recent, "two or more orders, the last within the lapse window"),
            "lapsed": (ordered & ~recent, "ordered before, but not within the lapse window"),
        }
        made = tuple(
            SegmentDefinition(LIFECYCLE_PREFIX + stage, condition, description, "builtin")
            for stage, (condition, description) in rules.items()
        )
        object.__setattr__(self, "definitions", made)


def check_definitions(definitions: Mapping[str, SegmentDefinition]) -> None:
    """Every reference names a segment, and no segment reaches itself; InvalidInput names the segment."""
    for name, definition in definitions.items():
        for ref in definition.references():
            if ref not in definitions:
                raise InvalidInput(f"segment {name!r}: condition names segment {ref!r}, which does not exist")
    for name in definitions:
        _no_cycle(name, definitions, ())


def _no_cycle(name: str, definitions: Mapping[str, SegmentDefinition], stack: tuple[str, ...]) -> None:
    if name in stack:
        raise InvalidInput(
            f"segment {stack[0]!r}: its condition refers to itself ({' → '.join((*stack, name))})"
        )
    for ref in definitions[name].references():
        if ref in definitions:
            _no_cycle(ref, definitions, (*stack, name))
