"""counter changes applied under an idempotency key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('applied_counter_change',
    sa.Column('character_id', sa.Uuid(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('conversations', sa.Integer(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['character_id'], ['characters.character.id'], name=op.f('fk_applied_counter_change_character_id_character'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('character_id', 'idempotency_key', name=op.f('pk_applied_counter_change')),
    schema='characters'
    )


def downgrade() -> None:
    op.drop_table('applied_counter_change', schema='characters')
