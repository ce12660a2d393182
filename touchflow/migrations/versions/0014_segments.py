"""segments: API-defined segments, memberships and their movements; events by customer, name and time

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import touchflow.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_events_customer_name_occurred', 'events', ['customer_id', 'name', 'occurred_at'], unique=False
    )
    op.create_table(
        'segments',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.String(length=500), nullable=False),
        sa.Column('condition', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
        sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'segment_memberships',
        sa.Column('segment', sa.String(length=100), nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('entered_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('segment', 'customer_id'),
    )
    op.create_index(
        op.f('ix_segment_memberships_customer_id'), 'segment_memberships', ['customer_id'], unique=False
    )
    op.create_table(
        'segment_movements',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('segment', sa.String(length=100), nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('entered', sa.Boolean(), nullable=False),
        sa.Column('at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        op.f('ix_segment_movements_customer_id'), 'segment_movements', ['customer_id'], unique=False
    )
    op.create_index('ix_segment_movements_segment_at', 'segment_movements', ['segment', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_segment_movements_segment_at', table_name='segment_movements')
    op.drop_index(op.f('ix_segment_movements_customer_id'), table_name='segment_movements')
    op.drop_table('segment_movements')
    op.drop_index(op.f('ix_segment_memberships_customer_id'), table_name='segment_memberships')
    op.drop_table('segment_memberships')
    op.drop_table('segments')
    op.drop_index('ix_events_customer_name_occurred', table_name='events')
