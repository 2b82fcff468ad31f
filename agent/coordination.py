"""Work sharing between replicas: at most one agent checks a system at a time.

Replicas that share one PostgreSQL state store take a session-level advisory lock per system
(``pg_try_advisory_lock``) around each scheduled check; the others skip that tick. The lock lives on
a dedicated connection, so when a replica dies its connection closes, PostgreSQL releases the lock
and the next replica to tick takes the work over. Elsewhere (SQLite: one host, usually one process) a
process-local lock keeps the scheduler and the API from checking the same system at once; across
processes the runner's unique ``(system_id, window_start)`` constraint remains the backstop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from agent.store import Store
from config.errors import StateStoreError

log = logging.getLogger("aims.coordination")

# every aims-agent lock key starts from this namespace, so other applications' advisory locks on the
# same database do not collide with ours by accident
_NAMESPACE = "aims-agent/check/"


def lock_key(system_id: str) -> int:
    """A stable signed 64-bit key per system (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.sha256(f"{_NAMESPACE}{system_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SystemLocks(Protocol):
    """Try to become the one replica checking a system; yields whether this replica got it."""

    def hold(self, system_id: str, *, wait: float = 0.0) -> AbstractContextManager[bool]: ...


class LocalLocks:
    """One non-blocking lock per system inside this process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, system_id: str, *, wait: float = 0.0) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(system_id, threading.Lock())
        got = lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()


class PostgresAdvisoryLocks:
    """Session-level advisory locks on a connection held for the duration of the check.

    A process-local lock is taken first: PostgreSQL advisory locks are re-entrant per session but
    two threads of one replica use two sessions, and this keeps the API's "run now" and the
    scheduler of the same replica from both asking the database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._local = LocalLocks()

    @contextmanager
    def hold(self, system_id: str, *, wait: float = 0.0) -> Iterator[bool]:
        deadline = time.monotonic() + wait
        with self._local.hold(system_id, wait=wait) as local:
            if not local:
                yield False
                return
            key = lock_key(system_id)
            try:
                conn = self.store.engine.connect()
            except SQLAlchemyError as exc:
                raise StateStoreError(f"cannot take the check lock of {system_id}: {exc}") from exc
            try:
                got = self._try(conn, key, system_id)
                while not got and time.monotonic() < deadline:
                    time.sleep(0.2)
                    got = self._try(conn, key, system_id)
                try:
                    yield got
                finally:
                    if got:
                        self._release(conn, key, system_id)
            finally:
                conn.close()

    @staticmethod
    def _try(conn: Connection, key: int, system_id: str) -> bool:
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()  # do not sit "idle in transaction" while the check runs
        except SQLAlchemyError as exc:
            conn.invalidate()
            raise StateStoreError(f"cannot take the check lock of {system_id}: {exc}") from exc
        return got

    @staticmethod
    def _release(conn: Connection, key: int, system_id: str) -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
        except SQLAlchemyError as exc:
            # a connection that may still hold the lock must never go back to the pool: discarding
            # it closes the session and PostgreSQL drops the lock with it
            log.warning("releasing the check lock of %s failed (%s); dropping the connection", system_id, exc)
            conn.invalidate()


def locks_for(store: Store) -> LocalLocks | PostgresAdvisoryLocks:
    """Advisory locks when the state store is PostgreSQL, process-local locks otherwise."""
    if store.dialect == "postgresql":
        return PostgresAdvisoryLocks(store)
    return LocalLocks()
