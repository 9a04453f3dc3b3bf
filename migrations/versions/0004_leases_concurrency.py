"""hold leases, per-key concurrency, user ceilings, ledger hold detail

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('holds') as batch:
        batch.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch.create_index('ix_holds_api_key_id', ['api_key_id'])
        batch.create_index('ix_holds_lease_until', ['lease_until'])
    with op.batch_alter_table('ledger') as batch:
        batch.add_column(sa.Column('hold_nanos', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('over_hold', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('detail', sa.JSON(), nullable=True))
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('concurrency', sa.Integer(), nullable=False, server_default='16'))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('max_rpm', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('max_concurrency', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('may_lift_quotas', sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('users') as batch:
        batch.drop_column('may_lift_quotas')
        batch.drop_column('max_concurrency')
        batch.drop_column('max_rpm')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('concurrency')
    with op.batch_alter_table('ledger') as batch:
        batch.drop_column('detail')
        batch.drop_column('over_hold')
        batch.drop_column('hold_nanos')
    with op.batch_alter_table('holds') as batch:
        batch.drop_index('ix_holds_lease_until')
        batch.drop_index('ix_holds_api_key_id')
        batch.drop_column('lease_until')
        batch.drop_column('api_key_id')
