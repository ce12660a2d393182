"""broadcasts and the audience snapshot each one sends to

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import touchflow.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
    op.create_table(
        'broadcasts',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('audience', json, nullable=False),
        sa.Column('via', json, nullable=False),
        sa.Column('content', json, nullable=True),
        sa.Column('template', sa.String(length=100), nullable=True),
        sa.Column('send_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('local_time', sa.String(length=5), nullable=True),
        sa.Column('rate', sa.Float(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total', sa.Integer(), nullable=True),
        sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'broadcast_recipients',
        sa.Column('broadcast_id', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('due_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('batch', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('broadcast_id', 'customer_id'),
    )
    op.create_index(
        'ix_broadcast_recipients_batch', 'broadcast_recipients', ['broadcast_id', 'due_at', 'batch'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_broadcast_recipients_batch', table_name='broadcast_recipients')
    op.drop_table('broadcast_recipients')
    op.drop_table('broadcasts')
