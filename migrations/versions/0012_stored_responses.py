"""stored responses: Responses API objects kept for previous_response_id and GET /v1/responses/{id}

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-06 22:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stored_responses',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('api_key_id', sa.Integer(), nullable=True),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('upstream', sa.String(length=100), nullable=True),
    sa.Column('previous_response_id', sa.String(length=64), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('input_items', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_stored_responses_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stored_responses'))
    )
    op.create_index('ix_stored_responses_created', 'stored_responses', ['created_at'], unique=False)
    op.create_index('ix_stored_responses_user', 'stored_responses', ['user_id'], unique=False)


def downgrade():
    op.drop_index('ix_stored_responses_user', table_name='stored_responses')
    op.drop_index('ix_stored_responses_created', table_name='stored_responses')
    op.drop_table('stored_responses')
