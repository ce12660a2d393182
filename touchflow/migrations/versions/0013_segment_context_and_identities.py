"""segment ingestion: an event's context, and the identities anonymous visitors merged into

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import touchflow.models


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True)
        )
    op.create_table(
        'identities',
        sa.Column('anonymous_id', sa.String(length=128), nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('merged_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('anonymous_id'),
    )
    op.create_index(op.f('ix_identities_customer_id'), 'identities', ['customer_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_identities_customer_id'), table_name='identities')
    op.drop_table('identities')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('context')
