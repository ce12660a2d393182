"""Segments: their definitions (API-defined rows; declared ones from the registry), the memberships kept
as events and profiles change, and the movement log of every entry and exit.

A condition (`touchflow.segments`) becomes one SQL boolean over `customers` (correlated subqueries for event
history), the same on SQLite and PostgreSQL. Keeping a segment is two statements whoever runs them (the ingest
rule for a few customers, the sweep for all): insert the matching customers not yet members, delete the
members that no longer match; what they return is the movement.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from touchflow.db import read_modify_write
from touchflow.errors import ConfigurationError, InvalidInput, NotFound
from touchflow.models import (
    Broadcast,
    BroadcastStatus,
    Customer,
    Event,
    OutboxEntry,
    PushSubscription,
    SegmentMembership,
    SegmentMovement,
    SegmentRow,
    Suppression,
    UTCDateTime,
    utcnow,
)
from touchflow.segments import (
    ANY_EVENT,
    DOWN,
    ENTERED_PREFIX,
    EXITED_PREFIX,
    LIFECYCLE_PREFIX,
    UP,
    All,
    AnyOf,
    Compare,
    EventCondition,
    InSegment,
    Lifecycle,
    LifecycleRules,
    Move,
    Node,
    Not,
    Reachable,
    SegmentConflict,
    SegmentDefinition,
    check_definitions,
    moves_with,
    parse_condition,
    segment_event_id,
)
from touchflow.storage.base import Repository, among, dialect_insert, insert_ignore, table

if TYPE_CHECKING:
    from touchflow.settings import Settings


class Declares(Protocol):
    """What a composition root hands `configure` (the registry: storage does not import it)."""

    @property
    def segments(self) -> Mapping[str, SegmentDefinition]: ...

    @property
    def routed(self) -> frozenset[str]: ...


class Segments(Repository):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._declared: dict[str, SegmentDefinition] = {d.name: d for d in LifecycleRules().definitions}
        self.marketing_consent_default = True
        self.relayed: frozenset[str] = frozenset()

    def declare(
        self,
        segments: Iterable[SegmentDefinition],
        *,
        lifecycle: LifecycleRules | None = None,
        marketing_consent_default: bool = True,
        relayed: Collection[str] = (),
    ) -> None:
        """The segments of the code (journey modules, lifecycle stages), as the composition roots know them,
        and the event names journeys route (`Registry.routed`: which segment moves become events). Every
        process declares the same, so nothing here is state another process would not see."""
        declared = {d.name: d for d in (lifecycle or LifecycleRules()).definitions}
        for definition in segments:
            if definition.name in declared:
                raise ConfigurationError(f"segment {definition.name!r} is declared twice")
            declared[definition.name] = definition
        check_definitions(declared)
        self._declared = declared
        self.marketing_consent_default = marketing_consent_default
        self.relayed = frozenset(relayed)

    def configure(self, settings: Settings, registry: Declares) -> None:
        """`declare` what the composition roots know: the registry's segments and routed events, the
        lifecycle settings, TOUCHFLOW_MARKETING_CONSENT_DEFAULT."""
        self.declare(
            registry.segments.values(),
            lifecycle=LifecycleRules.from_settings(settings),
            marketing_consent_default=settings.marketing_consent_default,
            relayed=registry.routed,
        )

    # -- definitions ---------------------------------------------------------------------------------------

    def definitions(self) -> dict[str, SegmentDefinition]:
        """Every segment: declared ones first, then those defined over the API, by name."""
        with self.engine.connect() as conn:
            return self._definitions(conn)

    def _definitions(self, conn: Connection) -> dict[str, SegmentDefinition]:
        found = dict(self._declared)
        rows = table(SegmentRow)
        for row in conn.execute(select(rows).order_by(rows.c.name)):
            found.setdefault(row.name, _stored(row))
        return found

    def get(self, name: str) -> SegmentDefinition | None:
        if name in self._declared:
            return self._declared[name]
        with self.engine.connect() as conn:
            row = conn.execute(select(table(SegmentRow)).where(table(SegmentRow).c.name == name)).first()
        return None if row is None else _stored(row)

    def create(
        self, name: str, description: str, condition: dict[str, Any]
    ) -> tuple[SegmentDefinition, list[Move]]:
        """Define a segment and fill it at once (one query over all profiles); 409 if the name is taken."""
        definition = SegmentDefinition(name, parse_condition(condition), description, "api")
        if name in self._declared:
            raise SegmentConflict(f"segment {name!r} is declared in code ({self._declared[name].source})")
        now = utcnow()
        with read_modify_write(self.engine) as conn:
            known = self._definitions(conn)
            if name in known:
                raise SegmentConflict(f"segment {name!r} exists already: PUT /v1/segments/{name} changes it")
            check_definitions({**known, name: definition})
            row = {"name": name, "description": description, "condition": definition.condition.to_json()}
            conn.execute(table(SegmentRow).insert().values(**row, created_at=now, updated_at=now))
            moves = self._keep(conn, [definition], None, now, self.relayed)
        return definition, moves

    def replace(
        self, name: str, description: str, condition: dict[str, Any]
    ) -> tuple[SegmentDefinition, list[Move]]:
        """Change an API-defined segment; its members are re-evaluated at once, entries and exits recorded."""
        definition = SegmentDefinition(name, parse_condition(condition), description, "api")
        self._writable(name)
        now = utcnow()
        rows = table(SegmentRow)
        with read_modify_write(self.engine) as conn:
            known = self._definitions(conn)
            if name not in known:
                raise NotFound(f"no segment named {name!r}")
            check_definitions({**known, name: definition})
            conn.execute(
                update(rows)
                .where(rows.c.name == name)
                .values(description=description, condition=definition.condition.to_json(), updated_at=now)
            )
            moves = self._keep(conn, [definition], None, now, self.relayed)
        return definition, moves

    def delete(self, name: str) -> None:
        """Remove an API-defined segment and its memberships: each an exit, recorded, and a
        `segment_exited:<name>` event where a journey listens, as any exit is."""
        self._writable(name)
        now = utcnow()
        rows, members = table(SegmentRow), table(SegmentMembership)
        with read_modify_write(self.engine) as conn:
            known = self._definitions(conn)
            if name not in known:
                raise NotFound(f"no segment named {name!r}")
            users = sorted(other for other, d in known.items() if name in d.references())
            if users:
                raise SegmentConflict(f"segment {name!r} is used by {', '.join(users)}: change those first")
            if waiting := _broadcasts_to_snapshot(conn, name):
                raise SegmentConflict(
                    f"segment {name!r} is the audience of broadcast {', '.join(waiting)}, which has not "
                    "taken its snapshot yet: cancel it first (POST /v1/broadcasts/<id>/cancel)"
                )
            gone = conn.scalars(
                delete(members).where(members.c.segment == name).returning(members.c.customer_id)
            )
            moves = [Move(name, customer_id, False) for customer_id in gone]
            _record(conn, moves, now)
            store_segment_events(conn, moves, now, self.relayed)
            conn.execute(delete(rows).where(rows.c.name == name))

    def _writable(self, name: str) -> None:
        if name in self._declared:
            source = self._declared[name].source
            where = "built in" if source == "builtin" else "declared in a journey module (TOUCHFLOW_JOURNEYS)"
            raise SegmentConflict(f"segment {name!r} is {where}: change it in code, not over the API")

    # -- membership ----------------------------------------------------------------------------------------

    def size(self, name: str) -> int:
        members = table(SegmentMembership)
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(members).where(members.c.segment == name)
            return int(conn.scalar(query) or 0)

    def member_ids(self, name: str, after: str | None, limit: int) -> list[str]:
        """Customer ids of the segment's members, in id order, after the cursor `after` (the last id seen)."""
        return [member.customer_id for member in self.members(name, after, limit)]

    def members(self, name: str, after: str | None, limit: int) -> list[SegmentMembership]:
        members = table(SegmentMembership)
        query = select(members).where(members.c.segment == name)
        if after is not None:
            query = query.where(members.c.customer_id > after)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(members.c.customer_id).limit(limit))
            return [SegmentMembership.model_validate(row._mapping) for row in rows]

    def of_customer(self, customer_id: str) -> list[SegmentMembership]:
        """The segments the customer is in now, by name."""
        members = table(SegmentMembership)
        query = select(members).where(members.c.customer_id == customer_id).order_by(members.c.segment)
        with self.engine.connect() as conn:
            return [SegmentMembership.model_validate(row._mapping) for row in conn.execute(query)]

    def movements(self, name: str, limit: int = 100) -> list[SegmentMovement]:
        """The segment's latest entries and exits, newest first."""
        moves = table(SegmentMovement)
        query = select(moves).where(moves.c.segment == name).order_by(moves.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [SegmentMovement.model_validate(row._mapping) for row in conn.execute(query)]

    def matching(self, condition: Node) -> list[str]:
        """The ids of the profiles a condition holds for now, in id order (one query; nothing is kept)."""
        customers = table(Customer)
        with self.engine.connect() as conn:
            expr = _Sql(conn.dialect.name, utcnow(), self._definitions(conn), self.marketing_consent_default)
            query = select(customers.c.id).where(expr.of(condition, customers)).order_by(customers.c.id)
            return list(conn.scalars(query))

    def on_profile(
        self, conn: Connection, customer_ids: Collection[str], now: datetime, *, created: bool = False
    ) -> list[Move]:
        """Inside a profile change's transaction: re-evaluate, for these customers, the segments that read
        the profile (attributes, contact, consents); every segment for a profile just `created`."""
        if not customer_ids:
            return []
        known = self._definitions(conn)
        affected = [d for d in known.values() if created or _depends(d, known).profile]
        return self._keep(conn, affected, sorted(customer_ids), now, self.relayed, known=known)

    def refresh(self, names: Sequence[str] | None = None, now: datetime | None = None) -> list[Move]:
        """Re-evaluate whole segments (all, or `names`) over every profile: what the schedule runs for the
        conditions that change with time alone ("no order in 30 days"), as of `now` (default: now)."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            known = self._definitions(conn)
            chosen = [known[n] for n in names if n in known] if names is not None else list(known.values())
            return self._keep(conn, chosen, None, now, self.relayed)

    def on_ingest(
        self,
        conn: Connection,
        events: Collection[tuple[str, str]],
        created: Collection[str],
        now: datetime,
        relayed: Collection[str],
    ) -> list[Move]:
        """Inside the ingest's transaction: each segment these events may move, for the customers whose
        events may move it (`events` are (customer id, event name) pairs), and only where it can move
        (`moves_with`: a member of a segment the events can only move up is not evaluated again); every
        segment for the customers the ingest created. Segments to evaluate for the same customers are
        evaluated in one pass."""
        known = self._definitions(conn)
        done: dict[str, set[str]] = {}
        for customer_id, name in events:
            done.setdefault(customer_id, set()).add(name)
        fresh = frozenset(created)
        alike: dict[frozenset[str], set[str]] = {}  # customers by the names of their new events
        for customer_id, names in done.items():
            if customer_id not in fresh:
                alike.setdefault(frozenset(names), set()).add(customer_id)
        members: dict[str, set[str]] = {}
        kept = table(SegmentMembership)
        query = select(kept.c.segment, kept.c.customer_id).where(
            among(conn, kept.c.customer_id, sorted(done.keys() - fresh))
        )
        for segment, customer_id in conn.execute(query):
            members.setdefault(segment, set()).add(customer_id)
        groups: dict[frozenset[str], list[SegmentDefinition]] = {}
        for definition in known.values():
            chosen = set(fresh)
            inside = members.get(definition.name, set())
            for their_names, alike_customers in alike.items():
                way = moves_with(definition.condition, their_names, known)
                if way == UP | DOWN:
                    chosen |= alike_customers
                elif way == UP:
                    chosen |= alike_customers - inside
                elif way == DOWN:
                    chosen |= alike_customers & inside
            if chosen:
                groups.setdefault(frozenset(chosen), []).append(definition)
        moves: list[Move] = []
        for group, definitions in groups.items():
            moves += self._keep(conn, definitions, sorted(group), now, relayed, derive=False, known=known)
        return moves

    def _keep(
        self,
        conn: Connection,
        definitions: Sequence[SegmentDefinition],
        customer_ids: Sequence[str] | None,
        now: datetime,
        relayed: Collection[str],
        *,
        derive: bool = True,
        known: Mapping[str, SegmentDefinition] | None = None,
    ) -> list[Move]:
        """Make the memberships of `definitions` true (for `customer_ids`, or everyone) and record the moves;
        with `derive`, store the segment events journeys listen to (the ingest rule returns them instead)."""
        if not definitions or customer_ids == []:
            return []
        known = self._definitions(conn) if known is None else known
        sql = _Sql(conn.dialect.name, now, known, self.marketing_consent_default)
        if customer_ids is not None:
            moves = _keep_for(conn, sql, definitions, customer_ids, now)
        else:
            moves = _keep_all(conn, sql, definitions, now)
        _record(conn, moves, now)
        if derive:
            store_segment_events(conn, moves, now, relayed)
        return moves


def _keep_for(
    conn: Connection,
    sql: _Sql,
    definitions: Sequence[SegmentDefinition],
    customer_ids: Sequence[str],
    now: datetime,
) -> list[Move]:
    """A few customers (an ingest batch, a profile change): every segment evaluated in one pass over them (one
    column each), compared with their memberships; only what differs is written."""
    customers, members = table(Customer), table(SegmentMembership)
    columns = [case((sql.of(d.condition, customers), 1), else_=0) for d in definitions]
    names = [d.name for d in definitions]
    should: set[tuple[str, str]] = set()
    evaluated = select(customers.c.id, *columns).where(among(conn, customers.c.id, customer_ids))
    for row in conn.execute(evaluated):
        should.update((name, row[0]) for name, flag in zip(names, row[1:], strict=True) if flag)
    query = select(members.c.segment, members.c.customer_id).where(
        among(conn, members.c.customer_id, customer_ids), members.c.segment.in_(names)
    )
    current = {(row.segment, row.customer_id) for row in conn.execute(query)}
    moves: list[Move] = []
    for name in names:
        entering = sorted(c for s, c in should - current if s == name)
        leaving = sorted(c for s, c in current - should if s == name)
        if entering:
            rows = [{"segment": name, "customer_id": c, "entered_at": now} for c in entering]
            entered = insert_ignore(conn, SegmentMembership, rows, returning=members.c.customer_id)
            moves += [Move(name, c, True) for c in entering if c in entered]
        if leaving:
            gone = delete(members).where(
                members.c.segment == name, among(conn, members.c.customer_id, leaving)
            )
            exited = set(conn.scalars(gone.returning(members.c.customer_id)))
            moves += [Move(name, c, False) for c in leaving if c in exited]
    return moves


def _keep_all(
    conn: Connection, sql: _Sql, definitions: Sequence[SegmentDefinition], now: datetime
) -> list[Move]:
    """Every profile (the sweep, a segment made or changed): two set statements per segment, in the database,
    so memory stays flat however many profiles there are."""
    customers, members = table(Customer), table(SegmentMembership)
    moves: list[Move] = []
    for definition in definitions:
        name = definition.name
        holds = sql.of(definition.condition, customers)
        is_member = exists().where(members.c.segment == name, members.c.customer_id == customers.c.id)
        entering = select(customers.c.id, literal(name, String()), literal(now, UTCDateTime())).where(
            holds, ~is_member
        )
        insert = (
            dialect_insert(conn, members)
            .from_select(["customer_id", "segment", "entered_at"], entering)
            .on_conflict_do_nothing()
            .returning(members.c.customer_id)
        )
        entered = sorted(conn.scalars(insert))
        still = exists().where(customers.c.id == members.c.customer_id, holds)
        leave = delete(members).where(members.c.segment == name, ~still)
        exited = sorted(conn.scalars(leave.returning(members.c.customer_id)))
        moves += [Move(name, c, True) for c in entered] + [Move(name, c, False) for c in exited]
    return moves


def _broadcasts_to_snapshot(conn: Connection, segment: str) -> list[str]:
    """The broadcasts to `segment` that will still read its members (their snapshot is not taken)."""
    broadcasts = table(Broadcast)
    ended = [BroadcastStatus.COMPLETED, BroadcastStatus.CANCELLED]
    query = select(broadcasts.c.id, broadcasts.c.audience).where(
        broadcasts.c.total.is_(None), broadcasts.c.status.not_in(ended)
    )
    return sorted(i for i, audience in conn.execute(query) if audience.get("segment") == segment)


def _stored(row: Any) -> SegmentDefinition:
    return SegmentDefinition(row.name, parse_condition(row.condition), row.description, "api")


def _record(conn: Connection, moves: Sequence[Move], now: datetime) -> None:
    rows = [
        {"segment": m.segment, "customer_id": m.customer_id, "entered": m.entered, "at": now} for m in moves
    ]
    if rows:
        conn.execute(table(SegmentMovement).insert(), rows)


def store_segment_events(
    conn: Connection, moves: Sequence[Move], now: datetime, relayed: Collection[str]
) -> None:
    """Store (and queue for the relay) the `segment_entered:<name>`/`segment_exited:<name>` events of the
    moves some journey starts or ends on; the others are in the movement log alone."""
    chosen = [m for m in moves if m.event_name in relayed]
    if not chosen:
        return
    events = [
        {
            "id": segment_event_id(m, now),
            "customer_id": m.customer_id,
            "name": m.event_name,
            "properties": {"segment": m.segment},
            "occurred_at": now,
            "received_at": now,
            "context": None,
        }
        for m in chosen
    ]
    ids = insert_ignore(conn, Event, events, returning=table(Event).c.id)
    outbox = [
        {"event_id": e["id"], "customer_id": e["customer_id"], "attempts": 0, "available_at": now}
        for e in events
        if e["id"] in ids
    ]
    insert_ignore(conn, OutboxEntry, outbox)


# ---------------------------------------------------------------------------------------------------------
# What a segment depends on
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Depends:
    events: frozenset[str]
    any_event: bool
    profile: bool


def _depends(definition: SegmentDefinition, known: Mapping[str, SegmentDefinition]) -> _Depends:
    """What may move the segment, its references' conditions included (references are checked acyclic)."""
    events, profile = set(definition.events()), definition.profile()
    for ref in definition.references():
        if ref in known:
            inner = _depends(known[ref], known)
            events |= inner.events | ({ANY_EVENT} if inner.any_event else set())
            profile = profile or inner.profile
    return _Depends(frozenset(events - {ANY_EVENT}), ANY_EVENT in events, profile)


# ---------------------------------------------------------------------------------------------------------
# Conditions in SQL
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sql:
    """Turns condition nodes into SQL booleans over a `customers` table, as of `now`. Every leaf is true or
    false, never NULL (a missing attribute is not equal to anything), so `not` means what it says."""

    dialect: str
    now: datetime
    definitions: Mapping[str, SegmentDefinition]
    marketing_default: bool

    def of(self, node: Node, customers: Table) -> ColumnElement[bool]:
        if isinstance(node, All):
            return and_(*(self.of(part, customers) for part in node.parts))
        if isinstance(node, AnyOf):
            return or_(*(self.of(part, customers) for part in node.parts))
        if isinstance(node, Not):
            return not_(self.of(node.part, customers))
        if isinstance(node, Compare):
            return self._compare(customers.c.attributes, node)
        if isinstance(node, EventCondition):
            return self._event(node, customers)
        if isinstance(node, Reachable):
            return self._reachable(node, customers)
        if isinstance(node, InSegment | Lifecycle):
            name = node.segment if isinstance(node, InSegment) else LIFECYCLE_PREFIX + node.stage
            if name not in self.definitions:
                raise InvalidInput(f"condition names segment {name!r}, which does not exist")
            return self.of(self.definitions[name].condition, customers)
        raise TypeError(f"not a condition: {node!r}")

    # JSON documents (attributes, consents, event properties) read by type: a value of another type is no
    # match, never an error (PostgreSQL would refuse to cast "Hà Nội" to a number).
    def _type(self, doc: Any, key: str) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return func.jsonb_typeof(doc.op("->")(literal(key)))
        return func.json_type(doc, f'$."{key}"')

    def _text(self, doc: Any, key: str) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return case((self._type(doc, key) == "string", doc.op("->>")(literal(key))), else_=None)
        return case((self._type(doc, key) == "text", func.json_extract(doc, f'$."{key}"')), else_=None)

    def _number(self, doc: Any, key: str) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            value = cast(doc.op("->>")(literal(key)), Float())
            return case((self._type(doc, key) == "number", value), else_=None)
        extracted = func.json_extract(doc, f'$."{key}"')
        return case((self._type(doc, key).in_(["integer", "real"]), extracted), else_=None)

    def _is(self, doc: Any, key: str, flag: bool) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return _sure(doc.op("->")(literal(key)) == cast(literal("true" if flag else "false"), JSONB()))
        return _sure(self._type(doc, key) == ("true" if flag else "false"))

    def _present(self, doc: Any, key: str) -> ColumnElement[bool]:
        kind = self._type(doc, key)
        return _sure(and_(kind.is_not(None), kind != "null"))

    def _eq(self, doc: Any, key: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return self._is(doc, key, value)
        if isinstance(value, int | float):
            return _sure(self._number(doc, key) == value)
        return _sure(self._text(doc, key) == value)

    def _compare(self, doc: Any, node: Compare) -> ColumnElement[bool]:
        key, op, value = node.key, node.op, node.value
        if op == "exists":
            return self._present(doc, key) if value else not_(self._present(doc, key))
        if op in ("older_than", "newer_than"):
            cutoff = (self.now - value).isoformat()
            text = self._text(doc, key)
            return _sure(text < cutoff if op == "older_than" else text >= cutoff)
        if op == "eq":
            return self._eq(doc, key, value)
        if op == "ne":
            return not_(self._eq(doc, key, value))
        if op == "in":
            return or_(*(self._eq(doc, key, item) for item in value))
        if op == "contains":
            return or_(self._text_contains(doc, key, value), self._list_contains(doc, key, value))
        target = self._number(doc, key) if isinstance(value, int | float) else self._text(doc, key)
        compared = {
            "gt": target > value,
            "gte": target >= value,
            "lt": target < value,
            "lte": target <= value,
        }
        return _sure(compared[op])

    def _text_contains(self, doc: Any, key: str, value: Any) -> ColumnElement[bool]:
        if not isinstance(value, str):
            return false()
        if self.dialect == "postgresql":
            return _sure(func.strpos(self._text(doc, key), value) > 0)
        return _sure(func.instr(self._text(doc, key), value) > 0)

    def _list_contains(self, doc: Any, key: str, value: Any) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return _sure(doc.op("->")(literal(key)).op("@>")(cast(literal(json.dumps([value])), JSONB())))
        items = func.json_each(doc, f'$."{key}"').table_valued("value", "type").alias()
        same: ColumnElement[bool]
        if isinstance(value, bool):
            same = items.c.type == ("true" if value else "false")
        else:
            same = and_(items.c.value == value, items.c.type.not_in(["true", "false", "array", "object"]))
        return exists(select(1).select_from(items).where(same))

    def _event(self, node: EventCondition, customers: Table) -> ColumnElement[bool]:
        events = table(Event).alias()
        where = [events.c.customer_id == customers.c.id]
        if node.event == ANY_EVENT:
            # Segment movements are not activity: counted, they would make entering a stage an engagement.
            where += [
                not_(events.c.name.startswith(ENTERED_PREFIX, autoescape=True)),
                not_(events.c.name.startswith(EXITED_PREFIX, autoescape=True)),
            ]
        else:
            where.append(events.c.name == node.event)
        if node.within is not None:
            where.append(events.c.occurred_at >= self.now - node.within)
        where += [self._compare(events.c.properties, part) for part in node.where]
        # "Did it" and "never did it" need no count: the first matching row answers.
        if node.sum is None and node.count in ((("gte", 1),), (("gt", 0),)):
            return exists().select_from(events).where(*where)
        if node.sum is None and node.count in ((("eq", 0),), (("lt", 1),), (("lte", 0),)):
            return not_(exists().select_from(events).where(*where))
        if node.sum is None:
            measure: ColumnElement[Any] = func.count()
        else:
            measure = func.coalesce(func.sum(self._number(events.c.properties, node.sum)), 0)
        value = select(measure).select_from(events).where(*where).scalar_subquery()
        checks = {
            "eq": lambda n: value == n,
            "ne": lambda n: value != n,
            "gt": lambda n: value > n,
            "gte": lambda n: value >= n,
            "lt": lambda n: value < n,
            "lte": lambda n: value <= n,
        }
        return and_(*(_sure(checks[op](n)) for op, n in node.count))

    def _reachable(self, node: Reachable, customers: Table) -> ColumnElement[bool]:
        """An address on the channel that is not suppressed (as a channel's `recipients` finds it), and the
        consent `activities.policy.consent_refusal` would find (the same keys, most specific first,
        `all: false` over everything)."""
        c = customers.c
        push = table(PushSubscription)
        address: ColumnElement[bool] = {
            "email": and_(c.email.is_not(None), c.email != "", self._unsuppressed("email", c.email)),
            "zalo_zns": and_(c.phone.is_not(None), c.phone != "", self._unsuppressed("zalo_zns", c.phone)),
            "web_push": exists().where(
                push.c.customer_id == c.id, or_(push.c.expires_at.is_(None), push.c.expires_at > self.now)
            ),
            "onsite": true(),
        }[node.channel]
        consents, channel = c.consents, node.channel
        if node.topic == "marketing":
            keys, default = [f"{channel}.marketing", channel, "marketing"], self.marketing_default
        else:
            keys, default = [f"{channel}.transactional"], True
        whens: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = []
        for key in keys:
            whens += [(self._is(consents, key, True), true()), (self._is(consents, key, False), false())]
        allowed = case(*whens, else_=true() if default else false())
        return and_(address, not_(self._is(consents, "all", False)), _sure(allowed))

    def _unsuppressed(self, channel: str, address: Any) -> ColumnElement[bool]:
        """The address is not on the channel's suppression list (kept hashed: `touchflow.db.address_hash`;
        PostgreSQL trims spaces only, where Python trims all whitespace: stored addresses have none)."""
        if self.dialect == "postgresql":
            text = func.convert_to(func.lower(func.btrim(address)), literal("UTF8"))
            hashed = func.encode(func.sha256(text), literal("hex"))
        else:
            hashed = func.address_hash(address)
        suppressions = table(Suppression)
        return not_(exists().where(suppressions.c.channel == channel, suppressions.c.address_hash == hashed))


def _sure(expr: ColumnElement[Any]) -> ColumnElement[bool]:
    """NULL (a missing or mistyped value) counts as false."""
    return func.coalesce(expr, false())
