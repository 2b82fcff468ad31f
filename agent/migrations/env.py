"""Alembic environment: migrations run programmatically by ``agent.store.migrate`` with a connection."""

from __future__ import annotations

from alembic import context

from agent.schema import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic path is supported
    raise RuntimeError("run migrations through agent.store.migrate()")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
