"""relay ordering: the outbox knows each entry's customer and relay_leases says which relay holds a
customer's entries; journey entries record the event that started them; one open per delivery

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relay_leases',
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=100), nullable=False),
    sa.Column('until', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.String(length=128), nullable=True))
    op.execute(
        "UPDATE outbox SET customer_id = "
        "(SELECT events.customer_id FROM events WHERE events.id = outbox.event_id)"
    )
    # An entry whose event is gone (its customer erased) has nothing left to relay.
    op.execute("DELETE FROM outbox WHERE customer_id IS NULL")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('customer_id', existing_type=sa.String(length=128), nullable=False)
        batch_op.create_index('ix_outbox_customer_available', ['customer_id', 'available_at'], unique=False)
    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger_event_id', sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f('ix_journey_entries_trigger_event_id'), ['trigger_event_id'], unique=False)
    # Pixels fetched again left an open each: keep the first, then let the index keep it that way.
    op.execute(
        "DELETE FROM engagements WHERE kind = 'open' AND id NOT IN "
        "(SELECT MIN(id) FROM engagements WHERE kind = 'open' GROUP BY delivery_id)"
    )
    op.create_index(
        'uq_engagements_one_open', 'engagements', ['delivery_id'], unique=True,
        sqlite_where=sa.text("kind = 'open'"), postgresql_where=sa.text("kind = 'open'"),
    )


def downgrade() -> None:
    op.drop_index('uq_engagements_one_open', table_name='engagements')
    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_entries_trigger_event_id'))
        batch_op.drop_column('trigger_event_id')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_customer_available')
        batch_op.drop_column('customer_id')
    op.drop_table('relay_leases')
