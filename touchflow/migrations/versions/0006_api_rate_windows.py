"""api rate windows

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models


revision = '0006'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_windows',
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key_id', 'window')
    )


def downgrade() -> None:
    op.drop_table('rate_windows')
