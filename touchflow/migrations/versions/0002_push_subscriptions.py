"""push subscriptions

Revision ID: 0002
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models

revision = '0002'
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('push_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('endpoint', sa.String(length=1024), nullable=False),
    sa.Column('p256dh', sa.String(length=100), nullable=False),
    sa.Column('auth', sa.String(length=50), nullable=False),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('expires_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_success_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('endpoint')
    )
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_subscriptions_customer_id'), ['customer_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_subscriptions_customer_id'))

    op.drop_table('push_subscriptions')
