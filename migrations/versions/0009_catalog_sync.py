"""catalog sync: auto-priced and needs-a-price markers, family price rules

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-06 19:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('catalog_models') as batch:
        batch.add_column(sa.Column('auto_priced', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('price_source', sa.Text(), nullable=True))
        batch.add_column(sa.Column('needs_price', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table('price_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pattern', sa.String(length=100), nullable=False),
    sa.Column('like_model', sa.String(length=100), nullable=True),
    sa.Column('input_nanos', sa.BigInteger(), nullable=True),
    sa.Column('output_nanos', sa.BigInteger(), nullable=True),
    sa.Column('cache_write_nanos', sa.BigInteger(), nullable=True),
    sa.Column('cache_write_1h_nanos', sa.BigInteger(), nullable=True),
    sa.Column('cache_read_nanos', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_rules')),
    sa.UniqueConstraint('pattern', name=op.f('uq_price_rules_pattern'))
    )


def downgrade():
    op.drop_table('price_rules')
    with op.batch_alter_table('catalog_models') as batch:
        batch.drop_column('needs_price')
        batch.drop_column('price_source')
        batch.drop_column('auto_priced')
