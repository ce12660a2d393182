"""Journey entries: one row per run a customer began, kept after Temporal has forgotten the run, for
re-entry rules, routing and the funnels (counted through `storage.rollups`: a run's status changes only as it
ends, with `ended_at`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlmodel import col

from touchflow.db import session_scope
from touchflow.models import JourneyEntry, JourneyStatus, utcnow
from touchflow.storage.base import Repository, table


class JourneyEntries(Repository):
    def enter(
        self,
        *,
        run_id: str,
        workflow_id: str,
        journey: str,
        customer_id: str,
        entry_key: str | None,
        trigger_event_id: str | None = None,
    ) -> tuple[JourneyEntry, list[JourneyEntry]]:
        """Record that a run began; returns it with the earlier runs of the same workflow id.

        Idempotent by `run_id`: a retried activity finds its own row.
        """
        with session_scope(self.engine) as session:
            earlier = list(
                session.scalars(
                    select(JourneyEntry)
                    .where(
                        col(JourneyEntry.workflow_id) == workflow_id,
                        col(JourneyEntry.run_id) != run_id,
                    )
                    .order_by(col(JourneyEntry.entered_at).desc())
                )
            )
            entry = session.scalars(
                select(JourneyEntry).where(col(JourneyEntry.run_id) == run_id)
            ).one_or_none()
            if entry is None:
                entry = JourneyEntry(
                    run_id=run_id,
                    workflow_id=workflow_id,
                    journey=journey,
                    customer_id=customer_id,
                    entry_key=entry_key,
                    trigger_event_id=trigger_event_id,
                )
                session.add(entry)
        return entry, earlier

    def leave(self, run_id: str, status: JourneyStatus, ended_by: str | None) -> None:
        entries = table(JourneyEntry)
        with self.engine.begin() as conn:
            conn.execute(
                update(entries)
                .where(entries.c.run_id == run_id)
                .values(status=status, ended_at=utcnow(), ended_by=ended_by)
            )

    def active_entries(self, journey: str, customer_id: str) -> list[JourneyEntry]:
        with self.session() as session:
            stmt = select(JourneyEntry).where(
                col(JourneyEntry.journey) == journey,
                col(JourneyEntry.customer_id) == customer_id,
                col(JourneyEntry.status) == JourneyStatus.ACTIVE,
            )
            return list(session.scalars(stmt))

    def runs_started_by(self, event_id: str) -> set[str]:
        """The workflow ids of the runs this event started (open or closed)."""
        entries = table(JourneyEntry)
        with self.engine.connect() as conn:
            query = select(entries.c.workflow_id).where(entries.c.trigger_event_id == event_id)
            return set(conn.scalars(query))

    def workflow_ids_of(self, customer_id: str) -> list[str]:
        """Every journey run the store knows of for a customer (open or closed)."""
        entries = table(JourneyEntry)
        with self.engine.connect() as conn:
            query = select(entries.c.workflow_id).where(entries.c.customer_id == customer_id).distinct()
            return sorted(conn.scalars(query))
