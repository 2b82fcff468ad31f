"""inference events posted by KServe and Seldon inference loggers

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inference_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('system_id', sa.String(length=64), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('ce_type', sa.String(length=120), nullable=False),
        sa.Column('ce_source', sa.String(length=300), nullable=False),
        sa.Column('inference_service', sa.String(length=200), nullable=True),
        sa.Column('namespace', sa.String(length=200), nullable=True),
        sa.Column('component', sa.String(length=100), nullable=True),
        sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('content_type', sa.String(length=120), nullable=True),
        sa.Column('body', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb'), nullable=False),
        sa.Column('attributes', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('system_id', 'event_id', 'kind', name='uq_inference_events_half'),
    )
    op.create_index('ix_inference_events_time', 'inference_events', ['system_id', 'kind', 'event_time'])


def downgrade() -> None:
    op.drop_index('ix_inference_events_time', table_name='inference_events')
    op.drop_table('inference_events')
