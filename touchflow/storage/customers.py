"""Customer profiles: upsert with merged attributes and consents, consent changes, lookups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlmodel import col

from touchflow.db import read_modify_write
from touchflow.models import Customer, CustomerIn, Identity, is_anonymous, utcnow
from touchflow.storage.base import Repository, insert_ignore, table


def bare_customer(customer_id: str, now: datetime) -> dict[str, Any]:
    """The row a profile starts as, its id and nothing else: what is inserted when an upsert, an event or a
    push subscription names a customer not yet known."""
    return {"id": customer_id, "attributes": {}, "consents": {}, "created_at": now, "updated_at": now}


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
            created = bool(
                insert_ignore(conn, Customer, [bare_customer(data.id, now)], returning=customers.c.id)
            )
            stored = conn.execute(select(customers).where(customers.c.id == data.id).with_for_update()).one()
            values: dict[str, Any] = {"updated_at": now}
            for field, value in changes.items():
                if field in ("attributes", "consents"):
                    # merged key by key; null clears them
                    values[field] = {} if value is None else {**getattr(stored, field), **value}
                else:
                    values[field] = value
            row = conn.execute(
                update(customers).where(customers.c.id == data.id).values(values).returning(*customers.c)
            ).one()
        return Customer.model_validate(row._mapping), created

    def set_consents(self, customer_id: str, changes: dict[str, bool]) -> Customer | None:
        """Merge consent changes into a profile (unsubscribe, provider signals); None if there is none.

        One statement (`merge_consents`), so a concurrent change to other consents is never lost.
        """
        with self.engine.begin() as conn:
            return merge_consents(conn, customer_id, changes)

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
