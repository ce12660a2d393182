"""coupons and their redemptions

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
import touchflow.models

revision = '0005'
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coupons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('journey', sa.String(length=100), nullable=False),
    sa.Column('entry_key', sa.String(length=128), nullable=True),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('expires_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', touchflow.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redeemed_order_id', sa.String(length=128), nullable=True),
    sa.Column('redeemed_event_id', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('coupons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coupons_customer_id'), ['customer_id'], unique=False)

    op.create_table('coupon_redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('at', touchflow.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('coupon_redemptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coupon_redemptions_code'), ['code'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('coupon_redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coupon_redemptions_code'))
    op.drop_table('coupon_redemptions')
    with op.batch_alter_table('coupons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coupons_customer_id'))
    op.drop_table('coupons')
