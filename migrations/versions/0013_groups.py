"""price groups and per-key dollar budgets

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('price_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('multiplier_num', sa.BigInteger(), nullable=False),
    sa.Column('multiplier_den', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('multiplier_num > 0 AND multiplier_den > 0',
                       name=op.f('ck_price_groups_multiplier_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_price_groups_name'))
    )
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('price_group_id', sa.Integer(), nullable=True))
        batch.create_index(batch.f('ix_users_price_group_id'), ['price_group_id'], unique=False)
        batch.create_foreign_key(batch.f('fk_users_price_group_id_price_groups'), 'price_groups',
                                 ['price_group_id'], ['id'])
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('budget_nanos', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('budget_period', sa.String(length=8), nullable=True))
    with op.batch_alter_table('key_usage') as batch:
        batch.add_column(sa.Column('spent_nanos', sa.BigInteger(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('key_usage') as batch:
        batch.drop_column('spent_nanos')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('budget_period')
        batch.drop_column('budget_nanos')
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint(batch.f('fk_users_price_group_id_price_groups'), type_='foreignkey')
        batch.drop_index(batch.f('ix_users_price_group_id'))
        batch.drop_column('price_group_id')
    op.drop_table('price_groups')
