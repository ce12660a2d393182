"""zalo hold: ZNS paused for the whole OA after a balance or payment error

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('zalo_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held_until', touchflow.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('held_because', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('zalo_tokens', schema=None) as batch_op:
        batch_op.drop_column('held_because')
        batch_op.drop_column('held_until')
