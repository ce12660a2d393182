"""insight: funnel rollups per hour, kept attributions, and the indexes that keep them current

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attribution_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('watermark', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('attributions',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revenue', sa.Float(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('journey', sa.String(length=100), nullable=True),
    sa.Column('step', sa.String(length=100), nullable=True),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=True),
    sa.Column('sent_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('attributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attributions_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attributions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_attributions_journey_at', ['journey', 'at'], unique=False)

    op.create_table('entry_rollups',
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('hour', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('journey', 'hour', 'status')
    )
    op.create_table('funnel_rollup_hours',
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('hour', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('computed_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('journey', 'hour')
    )
    op.create_table('funnel_rollups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('opened', sa.Integer(), nullable=False),
    sa.Column('clicked', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('funnel_rollups', schema=None) as batch_op:
        batch_op.create_index('ix_funnel_rollups_journey_hour', ['journey', 'hour'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_journey_created', ['journey', 'created_at'], unique=False)
        batch_op.create_index('ix_deliveries_journey_updated', ['journey', 'updated_at'], unique=False)

    with op.batch_alter_table('engagements', schema=None) as batch_op:
        batch_op.create_index('ix_engagements_at', ['at'], unique=False)

    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_journey_entries_journey_entered', ['journey', 'entered_at', 'status'], unique=False
        )
        batch_op.create_index('ix_journey_entries_journey_ended', ['journey', 'ended_at'], unique=False)

    with op.batch_alter_table('inbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_messages_read_at', ['read_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('journey_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_journey_entries_journey_ended')
        batch_op.drop_index('ix_journey_entries_journey_entered')

    with op.batch_alter_table('inbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_messages_read_at')

    with op.batch_alter_table('engagements', schema=None) as batch_op:
        batch_op.drop_index('ix_engagements_at')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_journey_updated')
        batch_op.drop_index('ix_deliveries_journey_created')

    with op.batch_alter_table('funnel_rollups', schema=None) as batch_op:
        batch_op.drop_index('ix_funnel_rollups_journey_hour')

    op.drop_table('funnel_rollups')
    op.drop_table('funnel_rollup_hours')
    op.drop_table('entry_rollups')
    with op.batch_alter_table('attributions', schema=None) as batch_op:
        batch_op.drop_index('ix_attributions_journey_at')
        batch_op.drop_index(batch_op.f('ix_attributions_customer_id'))
        batch_op.drop_index(batch_op.f('ix_attributions_at'))

    op.drop_table('attributions')
    op.drop_table('attribution_state')
