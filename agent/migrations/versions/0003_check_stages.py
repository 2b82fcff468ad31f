"""per-stage outcome of each system's last check, shared by replicas

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'check_stages',
        sa.Column('system_id', sa.String(length=64), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('duration_s', sa.Float(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('generation', sa.BigInteger(), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('system_id', 'stage'),
    )


def downgrade() -> None:
    op.drop_table('check_stages')
