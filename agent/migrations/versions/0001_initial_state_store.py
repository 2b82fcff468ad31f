"""initial state store

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('check_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.Column('evidence_seq', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('system_id', 'phase', 'window_start', name='uq_check_runs_window')
    )
    with op.batch_alter_table('check_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_runs_system_id'), ['system_id'], unique=False)

    op.create_table('check_stats',
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('check', sa.String(length=32), nullable=False),
    sa.Column('runs', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_duration_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('system_id', 'check')
    )
    op.create_table('decisions',
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('check', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('raw_state', sa.String(length=24), nullable=False),
    sa.Column('breach_streak', sa.Integer(), nullable=False),
    sa.Column('ok_streak', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system_id', 'check', 'subject')
    )
    op.create_table('evidence',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=48), nullable=False),
    sa.Column('system_id', sa.String(length=64), nullable=True),
    sa.Column('controls', sa.JSON(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_evidence_system_id'), ['system_id'], unique=False)

    op.create_table('incidents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('open_key', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('open_key')
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_incidents_system_id'), ['system_id'], unique=False)

    ledger_head = op.create_table('ledger_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # the head row exists from the start, so replicas appending their first records never race to create it
    op.bulk_insert(ledger_head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table('metric_values',
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('labels', sa.String(length=400), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system_id', 'family', 'labels')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('sink', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index('ix_outbox_order', ['sink', 'fingerprint', 'status'], unique=False)

    op.create_table('sink_tickets',
    sa.Column('sink', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('remote_id', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sink', 'fingerprint')
    )
    op.create_table('watermarks',
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('stream', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('system_id', 'stream')
    )


def downgrade() -> None:
    op.drop_table('watermarks')
    op.drop_table('sink_tickets')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_order')
        batch_op.drop_index(batch_op.f('ix_outbox_incident_id'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    op.drop_table('metric_values')
    op.drop_table('ledger_head')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incidents_system_id'))
        batch_op.drop_index(batch_op.f('ix_incidents_fingerprint'))

    op.drop_table('incidents')
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_system_id'))
        batch_op.drop_index(batch_op.f('ix_evidence_kind'))

    op.drop_table('evidence')
    op.drop_table('decisions')
    op.drop_table('check_stats')
    with op.batch_alter_table('check_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_runs_system_id'))

    op.drop_table('check_runs')
