"""The state store: one SQLAlchemy engine, migrated by Alembic on open, SQLite by default.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so several threads (scheduler,
API, outbox) and processes write without "database is locked" upgrades; PostgreSQL works by URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from config.errors import StateStoreError

MIGRATIONS = Path(__file__).with_name("migrations")
READ_ONLY = "aims_read_only"  # execution option of read sessions


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # take over transaction control from pysqlite so BEGIN IMMEDIATE can be issued
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before it returns, so an event acknowledged with 2xx survives power loss
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a writer takes the lock up front (no deadlock upgrading a read); a read session begins deferred,
        # so under WAL it reads its snapshot without waiting for a writer (another process's check)
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


class Store:
    """Owns the engine and hands out sessions; ``transaction()`` commits or rolls back as a unit."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StateStoreError(f"bad state store URL: {exc}") from exc
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as exc:
            raise StateStoreError(f"cannot open state store {parsed.render_as_string()}: {exc}") from exc
        if self.dialect == "sqlite":
            _sqlite_hooks(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, safe for concurrent starts)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # replicas starting together must not race on CREATE TABLE
                    conn.execute(text("SELECT pg_advisory_xact_lock(424242001)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise StateStoreError(f"cannot migrate the state store: {exc}") from exc

    def tables(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store error: {exc.__class__.__name__}: {exc}") from exc
        finally:
            session.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit). On SQLite it does not take the write lock: it reads a snapshot while
        another process writes."""
        session = self._reads()
        try:
            yield session
        except SQLAlchemyError as exc:
            raise StateStoreError(f"state store error: {exc.__class__.__name__}: {exc}") from exc
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()
