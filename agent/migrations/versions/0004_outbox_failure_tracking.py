"""outbox: the kind of the last failure, since when a message fails, and when it was given up on

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_kind', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('dead_at', sa.DateTime(timezone=True), nullable=True))
    # messages given up on before this revision keep counting as given up on
    op.execute("UPDATE outbox SET dead_at = created_at, error_kind = 'permanent' WHERE status = 'dead'")


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('dead_at')
        batch_op.drop_column('failing_since')
        batch_op.drop_column('error_kind')
