"""Database engine and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite gets WAL and a busy timeout so several processes can share it."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def address_hash(address: str) -> str:
    """How the suppression list keeps an address: SHA-256 of it trimmed and lower-cased (no PII in the
    table). In SQL too: a SQLite connection has it as the function `address_hash`; PostgreSQL computes the
    same with its own sha256 (`touchflow.storage.segments`, for `{"reachable": ...}`)."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _sql_address_hash(address: str | None) -> str | None:
    return None if address is None else address_hash(address)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("address_hash", 1, _sql_address_hash, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def schema_problem(engine: Engine) -> str | None:
    """Why the database's schema is not the one this code expects (None when it is current)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return None
    return f"the schema is at revision {current or 'none'}, this code needs {head}: run `touchflow migrate`"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (safe to call on every start)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_modify_write(engine: Engine) -> Iterator[Connection]:
    """A transaction for reading rows and writing what follows from them; commits on success.

    On SQLite it starts with `BEGIN IMMEDIATE`, taking the database's write lock before the first read (the
    pysqlite driver would otherwise begin only at the first write, after the reads, and a concurrent writer
    could change what was read in between); a second caller waits for the lock (`timeout`, above). Every
    other transaction keeps pysqlite's lazy begin: the batch-ingest path reads outside the lock. On
    PostgreSQL it is an ordinary transaction, in which the caller locks what it reads (`SELECT … FOR UPDATE`).
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
