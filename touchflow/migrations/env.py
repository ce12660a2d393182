"""Alembic environment: runs on the connection `touchflow.db.migrate` hands over, or on the configured URL."""

from alembic import context
from sqlmodel import SQLModel

import touchflow.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from touchflow.db import make_engine
from touchflow.settings import get_settings

target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(get_settings().resolved_database_url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
