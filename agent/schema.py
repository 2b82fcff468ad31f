"""Tables of the state store (SQLAlchemy 2); Alembic migrations in ``agent/migrations`` create them.

SQLite by default, PostgreSQL (or any SQLAlchemy database) by URL. Every table is small and keyed for
the access the agent makes; the evidence ledger is append-only and hash-chained.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Watermark(Base):
    """How far a system's collection has got: the end of the last window judged (or last id)."""

    __tablename__ = "watermarks"
    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)  # "predictions", "labels"
    value: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckRun(Base):
    """One evaluation of one system over one window (all its checks)."""

    __tablename__ = "check_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_id: Mapped[str] = mapped_column(String(64), index=True)
    phase: Mapped[str] = mapped_column(String(16), default="all")  # all | predictions | labels
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(24))  # ok | breach | insufficient_data | failed
    rows: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    results: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    evidence_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (UniqueConstraint("system_id", "phase", "window_start", name="uq_check_runs_window"),)


class CheckStat(Base):
    """Per (system, check): run and failure counters and the last timestamps, for /metrics."""

    __tablename__ = "check_stats"
    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    check: Mapped[str] = mapped_column(String(32), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_duration_s: Mapped[float] = mapped_column(Float, default=0.0)


class Decision(Base):
    """The current state of one (system, check, subject), with the streaks hysteresis needs."""

    __tablename__ = "decisions"
    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    check: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(24))  # ok | warning | breach | insufficient_data
    raw_state: Mapped[str] = mapped_column(String(24))  # the last window's verdict before hysteresis
    breach_streak: Mapped[int] = mapped_column(Integer, default=0)
    ok_streak: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MetricValue(Base):
    """The latest value of every exported series; /metrics is built from this table on each scrape."""

    __tablename__ = "metric_values"
    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(400), primary_key=True)  # canonical JSON of extra labels
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckStage(Base):
    """Outcome of each stage (read, metrics, commit) of a system's last check, whichever replica ran it.

    Kept in the store rather than in memory so every replica serves the same ``aims_check_stage_*``
    series; ``generation`` counts the writes of the row, so their sum over the table is a version that
    moves with every write without relying on replicas' clocks.
    """

    __tablename__ = "check_stages"
    system_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    duration_s: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Incident(Base):
    """One AI incident: at most one open per fingerprint (system, kind, subject)."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    system_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    content: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    # a partial unique index would be nicer, but SQLite and MariaDB disagree on them; this column is
    # set to the fingerprint while open and NULL otherwise, and NULLs never collide
    open_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)


class OutboxMessage(Base):
    """A notification to deliver to a sink; written in the same transaction as the incident change."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    sink: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # open | update | resolve
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # why the last attempt failed: retryable | unexpected | permanent (None once delivered or requeued)
    error_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # the first failed attempt since the message was queued or requeued: the retry budget counts from here
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # when the outbox first gave up on it; kept on requeue, so "given up on" counts never go down
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_order", "sink", "fingerprint", "status"),
    )


class SinkTicket(Base):
    """Which remote ticket a sink holds for a fingerprint, so updates go to the same ticket."""

    __tablename__ = "sink_tickets"
    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    remote_id: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvidenceRecord(Base):
    """An append-only, hash-chained evidence record tagged with the controls it supports."""

    __tablename__ = "evidence"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, part of the hashed content
    kind: Mapped[str] = mapped_column(String(48), index=True)
    system_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    controls: Mapped[list[str]] = mapped_column(JSON)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class LedgerHead(Base):
    """A single row locked while appending, so concurrent writers chain records one after another."""

    __tablename__ = "ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class InferenceEvent(Base):
    """One half of an inference (request, response) or a feedback, as posted by an inference logger.

    Stored before the logger gets its 2xx; the (system, event id, kind) key makes a redelivered event a
    no-op. Request and response share ``event_id`` (``ce-id``), which is how they are joined.
    """

    __tablename__ = "inference_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_id: Mapped[str] = mapped_column(String(64))  # "" when posted to the shared endpoint
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # request | response | feedback
    ce_type: Mapped[str] = mapped_column(String(120))
    ce_source: Mapped[str] = mapped_column(String(300))
    inference_service: Mapped[str | None] = mapped_column(String(200), nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(200), nullable=True)
    component: Mapped[str | None] = mapped_column(String(100), nullable=True)
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_type: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # up to ingest's 1 MiB limit: MySQL's TEXT stops at 64 KiB
    body: Mapped[str] = mapped_column(Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"))
    attributes: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("system_id", "event_id", "kind", name="uq_inference_events_half"),
        Index("ix_inference_events_time", "system_id", "kind", "event_time"),
    )
