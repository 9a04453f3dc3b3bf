"""security: session epochs

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users') as batch:
        batch.drop_column('session_epoch')
