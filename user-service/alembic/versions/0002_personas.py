"""personas

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 06:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('persona',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=False),
    sa.Column('avatar_url', sa.String(length=2048), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.user.id'], name=op.f('fk_persona_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persona')),
    schema='users'
    )
    op.create_index('ix_persona_user_created', 'persona', ['user_id', 'created_at'], unique=False, schema='users')
    op.create_index('uq_persona_user_default', 'persona', ['user_id'], unique=True, schema='users', postgresql_where=sa.text('is_default'))


def downgrade() -> None:
    op.drop_index('uq_persona_user_default', table_name='persona', schema='users', postgresql_where=sa.text('is_default'))
    op.drop_index('ix_persona_user_created', table_name='persona', schema='users')
    op.drop_table('persona', schema='users')
