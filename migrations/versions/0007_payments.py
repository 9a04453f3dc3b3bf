"""stripe top-ups

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-06 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stripe_topups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('amount_nanos', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('checkout_url', sa.Text(), nullable=True),
    sa.Column('refunded_nanos', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_nanos > 0', name=op.f('ck_stripe_topups_amount_positive')),
    sa.CheckConstraint('refunded_nanos >= 0', name=op.f('ck_stripe_topups_refunded_not_negative')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_stripe_topups_created_by_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_stripe_topups_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_topups')),
    sa.UniqueConstraint('session_id', name=op.f('uq_stripe_topups_session_id'))
    )
    with op.batch_alter_table('stripe_topups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_topups_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_topups_payment_intent_id'), ['payment_intent_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('stripe_topups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_topups_payment_intent_id'))
        batch_op.drop_index(batch_op.f('ix_stripe_topups_user_id'))
    op.drop_table('stripe_topups')
