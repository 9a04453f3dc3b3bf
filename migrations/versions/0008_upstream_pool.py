"""upstream pool: routing columns, live status, the account on each charge

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # Names become the accounts' handles (CLI, status, ledger): make existing ones unique.
    conn = op.get_bind()
    seen = set()
    for row_id, name in conn.execute(sa.text('SELECT id, name FROM upstreams ORDER BY id')).all():
        if name in seen or name.startswith('env-') or not name:
            conn.execute(sa.text('UPDATE upstreams SET name = :name WHERE id = :id'),
                         {'name': f'{name or "account"}-{row_id}', 'id': row_id})
        seen.add(name)
    with op.batch_alter_table('upstreams') as batch:
        batch.add_column(sa.Column('priority', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('weight', sa.Integer(), server_default='1', nullable=False))
        batch.add_column(sa.Column('models', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('max_concurrency', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('disabled_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_index('uq_upstreams_name', ['name'], unique=True)
    conn.execute(sa.text("UPDATE upstreams SET models = '[]'"))
    with op.batch_alter_table('upstreams') as batch:
        batch.alter_column('models', existing_type=sa.JSON(), nullable=False)
    op.create_table('upstream_status',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('strikes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_upstream_status'))
    )
    with op.batch_alter_table('ledger') as batch:
        batch.add_column(sa.Column('upstream', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('ledger') as batch:
        batch.drop_column('attempts')
        batch.drop_column('upstream')
    op.drop_table('upstream_status')
    with op.batch_alter_table('upstreams') as batch:
        batch.drop_index('uq_upstreams_name')
        for column in ('disabled_at', 'disabled_reason', 'max_concurrency', 'models', 'weight',
                       'priority'):
            batch.drop_column(column)
