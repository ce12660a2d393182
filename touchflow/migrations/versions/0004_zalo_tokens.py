"""zalo tokens and delivery receipts

Revision ID: 0004
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models

revision = '0004'
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('zalo_tokens',
    sa.Column('app_id', sa.String(length=64), nullable=False),
    sa.Column('access_token', sa.String(length=2048), nullable=True),
    sa.Column('refresh_token', sa.String(length=2048), nullable=False),
    sa.Column('expires_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seed_hash', sa.String(length=64), nullable=False),
    sa.Column('rotations', sa.Integer(), nullable=False),
    sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('app_id')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivered_at', touchflow.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_deliveries_provider_id', ['provider_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_id')
        batch_op.drop_column('delivered_at')
    op.drop_table('zalo_tokens')
