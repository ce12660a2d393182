"""onsite inbox messages

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models

revision = '0003'
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.String(length=4000), nullable=False),
    sa.Column('action_url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('read_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('archived_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', name='uq_inbox_messages_key')
    )
    with op.batch_alter_table('inbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_messages_customer_created', ['customer_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_messages_customer_created')

    op.drop_table('inbox_messages')
