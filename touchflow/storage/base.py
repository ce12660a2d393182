"""What every repository stands on: the engine, the tables behind the models, and the few statements whose
SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Integer, Select, Table, and_, any_, bindparam, cast, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from touchflow.encoding import b64url_decode, b64url_encode
from touchflow.errors import InvalidInput


class Repository:
    """One aggregate's reads and writes; each call is its own transaction (or a read outside one)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def session(self) -> Session:
        # Not expired on commit: what a caller reads keeps its values after the session has ended.
        return Session(self.engine, expire_on_commit=False)


def table(model: Any) -> Table:
    """The SQLAlchemy table of a SQLModel table model (typed, unlike `model.__table__`)."""
    found: Table = model.__table__
    return found


def dialect_insert(conn: Connection, target: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the connection's dialect, the kind that takes `ON CONFLICT` clauses."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(target)
    return sqlite.insert(target)


def insert_ignore(
    conn: Connection, model: Any, rows: Sequence[dict[str, Any]], returning: Any = None
) -> set[Any]:
    """INSERT … ON CONFLICT DO NOTHING in one round trip; returns the `returning` values of new rows."""
    if not rows:
        return set()
    stmt = dialect_insert(conn, table(model)).on_conflict_do_nothing()
    if conn.dialect.name == "postgresql":
        # SQLAlchemy sends up to 1,000 rows as one `VALUES` statement; psycopg parses a statement of more
        # than 50 parameters (`MAX_CACHED_STATEMENT_PARAMS`) anew on every execution, which was 41 % of the
        # API's time ingesting on PostgreSQL (py-spy). Pages that stay within its cache measured faster,
        # round trips included (docs/benchmarks.md, ingestion on PostgreSQL).
        stmt = stmt.execution_options(insertmanyvalues_page_size=max(1, 50 // len(rows[0])))
    if returning is None:
        conn.execute(stmt, list(rows))
        return set()
    result = conn.execute(stmt.returning(returning), list(rows))
    return set(result.scalars().all())


def among(conn: Connection, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`, one parameter however many values. An `IN`
    list of n values is a statement of n parameters, which psycopg converts anew each time past 50
    (`MAX_CACHED_STATEMENT_PARAMS`): the lookups of an ingest batch name up to 1,000 ids."""
    if len(values) == 1:
        # One value (a single send's lookup): a plain `=`, whose compiled statement is reused as it is.
        equal: ColumnElement[bool] = column == next(iter(values))
        return equal
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def locked(conn: Connection, query: Select[Any]) -> Select[Any]:
    """`query` holding its rows until the transaction ends: `FOR UPDATE` on PostgreSQL. SQLite has no row
    locks; there the transaction holds the database's write lock already (`read_modify_write`, or a write
    made earlier in it)."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def within(column: Any, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """The conditions of a time filter: `since` inclusive, `until` exclusive, either left open."""
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def epoch_bucket(conn: Connection, column: Any, width: int, origin: float = 0) -> ColumnElement[Any]:
    """Which slice of `width` seconds, counted from `origin` (seconds since the epoch), a time column falls
    in: a whole number, in the connection's dialect (for grouping in SQL)."""
    if conn.dialect.name == "postgresql":
        return func.floor((func.extract("epoch", column) - origin) / width)
    # SQLite: integer division of integers (the times a bucket is asked of are never before `origin`).
    return (cast(func.strftime("%s", column), Integer) - int(origin)) / width


def newest_first_cursor(created_at: datetime, ident: object) -> str:
    """The `next_cursor` after a row of a newest-first page: its creation time and id (ties go by id)."""
    return b64url_encode(f"{created_at.isoformat()}|{ident}".encode())


def older_than_cursor(
    cursor: str, created: Any, ident: Any, ident_type: Callable[[str], Any] = str
) -> ColumnElement[bool]:
    """The rows after `cursor` (`newest_first_cursor`) in newest-first order; InvalidInput naming `cursor`
    for one this API did not make."""
    try:
        text, _, last = b64url_decode(cursor).decode().partition("|")
        created_at, last_id = datetime.fromisoformat(text), ident_type(last)
    except ValueError:  # UnicodeDecodeError is one too
        raise InvalidInput("cursor: not a cursor this API returned; pass `next_cursor` as it came") from None
    return or_(created < created_at, and_(created == created_at, ident < last_id))
