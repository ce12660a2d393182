"""Customer profiles: upsert with merged attributes and consents, consent changes, lookups."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Engine, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlmodel import col

from touchflow.db import read_modify_write
from touchflow.models import Customer, CustomerIn, Identity, is_anonymous, utcnow
from touchflow.storage.base import Repository, among, insert_ignore, locked, table
from touchflow.storage.segments import Segments


def bare_customer(customer_id: str, now: datetime) -> dict[str, Any]:
    """The row a profile starts as, its id and nothing else: what is inserted when an upsert, an event or a
    push subscription names a customer not yet known."""
    return {"id": customer_id, "attributes": {}, "consents": {}, "created_at": now, "updated_at": now}


def known_ids(conn: Connection, customer_ids: Collection[str]) -> dict[str, str]:
    """Of these customer ids, the anonymous ones merged already, each with the customer it became."""
    anonymous = [customer_id for customer_id in customer_ids if is_anonymous(customer_id)]
    if not anonymous:
        return {}
    identities = table(Identity)
    query = select(identities.c.anonymous_id, identities.c.customer_id)
    rows = conn.execute(query.where(among(conn, identities.c.anonymous_id, anonymous)))
    return {anonymous_id: customer_id for anonymous_id, customer_id in rows}


def current_id(conn: Connection, customer_id: str) -> str:
    """Whom a write naming `customer_id` is for: an anonymous id merged already names the customer it became
    (a late identify, a push subscription posted under the cookie's id), so no merged-away profile comes
    back. The visitor's profile is locked first (`FOR UPDATE` on PostgreSQL, as `Identities.merge` locks
    it; on SQLite the caller holds the write lock), so a merge committing meanwhile is seen."""
    if not is_anonymous(customer_id):
        return customer_id
    customers = table(Customer)
    conn.execute(locked(conn, select(customers.c.id).where(customers.c.id == customer_id)))
    return known_ids(conn, [customer_id]).get(customer_id, customer_id)


def merge_consents(conn: Connection, customer_id: str, changes: dict[str, bool]) -> Customer | None:
    """Merge consent changes into a profile on `conn`; the profile as it is then, None if there is none.

    One statement: the database merges into the stored consents in the UPDATE itself, so the merge sees the
    row as it is (no read before the write that a concurrent change could overtake).
    """
    customers = table(Customer)
    row = conn.execute(
        update(customers)
        .where(customers.c.id == customer_id)
        .values(consents=_with_consents(conn, changes), updated_at=utcnow())
        .returning(*customers.c)
    ).one_or_none()
    return None if row is None else Customer.model_validate(row._mapping)


def _with_consents(conn: Connection, changes: dict[str, bool]) -> ColumnElement[Any]:
    consents = table(Customer).c.consents
    if conn.dialect.name == "postgresql":
        return consents.op("||", return_type=JSONB())(literal(changes, JSONB()))
    # RFC 7396 merge patch: key by key, as `{**stored, **changes}`, since every value is a bool.
    return func.json_patch(consents, literal(changes, JSON()), type_=JSON())


class Customers(Repository):
    def __init__(self, engine: Engine, segments: Segments | None = None) -> None:
        super().__init__(engine)
        # Segments that read the profile move with it, in the same transaction.
        self.segments = segments

    def upsert(self, data: CustomerIn) -> tuple[Customer, bool]:
        """Create or update a profile; fields not sent keep their value, attributes merge key by key.

        Safe side by side: the bare profile is inserted if absent (so two creations of one new customer do
        not collide), then the row is read under lock (`read_modify_write`, `FOR UPDATE`) and the merge
        written, so no concurrent change to it is lost.
        """
        changes = data.model_dump(exclude_unset=True, exclude={"id"})
        now = utcnow()
        customers = table(Customer)
        with read_modify_write(self.engine) as conn:
            customer_id = current_id(conn, data.id)
            created = bool(
                insert_ignore(conn, Customer, [bare_customer(customer_id, now)], returning=customers.c.id)
            )
            stored = conn.execute(
                select(customers).where(customers.c.id == customer_id).with_for_update()
            ).one()
            values: dict[str, Any] = {"updated_at": now}
            for field, value in changes.items():
                if field in ("attributes", "consents"):
                    # merged key by key; null clears them
                    values[field] = {} if value is None else {**getattr(stored, field), **value}
                else:
                    values[field] = value
            row = conn.execute(
                update(customers).where(customers.c.id == customer_id).values(values).returning(*customers.c)
            ).one()
            if self.segments is not None:
                self.segments.on_profile(conn, [customer_id], now, created=created)
        return Customer.model_validate(row._mapping), created

    def set_consents(self, customer_id: str, changes: dict[str, bool]) -> Customer | None:
        """Merge consent changes into a profile (unsubscribe, provider signals); None if there is none.

        One statement (`merge_consents`), so a concurrent change to other consents is never lost.
        """
        with self.engine.begin() as conn:
            changed = merge_consents(conn, customer_id, changes)
            if changed is not None and self.segments is not None:
                self.segments.on_profile(conn, [customer_id], utcnow())
            return changed

    def get_many(self, customer_ids: list[str]) -> dict[str, Customer]:
        """The profiles of these ids that exist, by id (no merged-visitor lookup: known customers)."""
        with self.session() as session:
            found = session.scalars(select(Customer).where(col(Customer.id).in_(customer_ids)))
            return {c.id: c for c in found}

    def get(self, customer_id: str) -> Customer | None:
        """The profile; for an anonymous id merged since, the customer it became (a journey that began
        while the visitor was anonymous reaches them as they are now)."""
        with self.session() as session:
            found = session.get(Customer, customer_id)
            if found is None and is_anonymous(customer_id):
                identity = session.get(Identity, customer_id)
                found = None if identity is None else session.get(Customer, identity.customer_id)
            return found

    def exists(self, customer_id: str) -> bool:
        """Whether a profile of this very id is stored (no identity followed)."""
        with self.session() as session:
            return session.get(Customer, customer_id) is not None
