"""security: session epochs, one-time secrets, upstream keys encrypted

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 10:00:00

"""
from alembic import op
import sqlalchemy as sa

from pagegrid import crypto


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
    op.create_table('one_time_secrets',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('label', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_one_time_secrets_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_one_time_secrets'))
    )
    op.create_index(op.f('ix_one_time_secrets_user_id'), 'one_time_secrets', ['user_id'], unique=False)
    # Upstream keys were plaintext: encrypt them under PAGEGRID_ENCRYPTION_KEY (crypto.py).
    conn = op.get_bind()
    for row_id, key in conn.execute(sa.text('SELECT id, api_key FROM upstreams')).all():
        conn.execute(sa.text('UPDATE upstreams SET api_key = :key WHERE id = :id'),
                     {'key': crypto.encrypt(key), 'id': row_id})


def downgrade():
    conn = op.get_bind()
    for row_id, token in conn.execute(sa.text('SELECT id, api_key FROM upstreams')).all():
        conn.execute(sa.text('UPDATE upstreams SET api_key = :key WHERE id = :id'),
                     {'key': crypto.decrypt(token), 'id': row_id})
    op.drop_index(op.f('ix_one_time_secrets_user_id'), table_name='one_time_secrets')
    op.drop_table('one_time_secrets')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('session_epoch')
