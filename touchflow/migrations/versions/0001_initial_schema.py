"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('locale', sa.String(length=35), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('consents', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('step', sa.String(length=100), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('workflow_id', sa.String(length=300), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=True),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_id', sa.String(length=300), nullable=True),
    sa.Column('error', sa.String(length=1000), nullable=True),
    sa.Column('attempts', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retry_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', name='uq_deliveries_key')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_customer_created', ['customer_id', 'created_at'], unique=False)
        batch_op.create_index('ix_deliveries_journey_step', ['journey', 'step'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('properties', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('occurred_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_customer_occurred', ['customer_id', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_name'), ['name'], unique=False)

    op.create_table('journey_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('workflow_id', sa.String(length=300), nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('entry_key', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('entered_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_by', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id')
    )
    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.create_index('ix_journey_entries_customer', ['customer_id', 'journey'], unique=False)
        batch_op.create_index(batch_op.f('ix_journey_entries_journey'), ['journey'], unique=False)
        batch_op.create_index(batch_op.f('ix_journey_entries_workflow_id'), ['workflow_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_available_at'), ['available_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_available_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_entries_workflow_id'))
        batch_op.drop_index(batch_op.f('ix_journey_entries_journey'))
        batch_op.drop_index('ix_journey_entries_customer')

    op.drop_table('journey_entries')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_name'))
        batch_op.drop_index('ix_events_customer_occurred')

    op.drop_table('events')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_journey_step')
        batch_op.drop_index('ix_deliveries_customer_created')

    op.drop_table('deliveries')
    op.drop_table('customers')
