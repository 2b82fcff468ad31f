"""Per-system check locks: one holder at a time, released on exit, and released by PostgreSQL when the
holder's session dies."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from agent.coordination import LocalLocks, PostgresAdvisoryLocks, lock_key, locks_for
from agent.store import Store


@pytest.mark.integration
def test_one_replica_holds_a_system_and_releases_it(pg_url: str) -> None:
    a, b = Store(pg_url), Store(pg_url, migrate=False)
    try:
        one, two = locks_for(a), locks_for(b)
        assert isinstance(one, PostgresAdvisoryLocks) and isinstance(two, PostgresAdvisoryLocks)
        with one.hold("credit") as got:
            assert got
            with two.hold("credit") as other:
                assert not other, "a second replica does not get the same system"
            with two.hold("churn") as other_system:
                assert other_system, "other systems stay free"
        with two.hold("credit") as got_after:
            assert got_after, "released when the holder finishes"
    finally:
        a.close()
        b.close()


@pytest.mark.integration
def test_a_dead_holder_releases_its_systems(pg_url: str) -> None:
    a, b = Store(pg_url), Store(pg_url, migrate=False)
    try:
        two = PostgresAdvisoryLocks(b)
        with PostgresAdvisoryLocks(a).hold("credit") as got:
            assert got
            # the holder's session dies (a SIGKILLed replica's connection is closed the same way)
            key = lock_key("credit") & 0xFFFFFFFFFFFFFFFF  # a bigint key is shown as two unsigned halves
            with b.engine.connect() as admin:
                killed = admin.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND classid = CAST(:hi AS bigint)::oid AND objid = CAST(:lo AS bigint)::oid AND objsubid = 1"),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalars().all()
            assert killed == [True]
            # the signal ends the backend a moment later, not at once: a replica retries at its next tick
            taken_over = False
            deadline = time.monotonic() + 10
            while not taken_over and time.monotonic() < deadline:
                with two.hold("credit") as taken_over:
                    pass
                if not taken_over:
                    time.sleep(0.1)
            assert taken_over, "another replica takes the system over"
    finally:
        a.close()
        b.close()


def test_a_run_now_waits_for_a_check_in_progress_on_the_same_replica() -> None:
    locks = LocalLocks()
    entered = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with locks.hold("credit") as got:
            assert got
            entered.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(5)
    with locks.hold("credit") as got:
        assert not got, "no wait: busy"
    threading.Timer(0.2, release.set).start()
    with locks.hold("credit", wait=5) as got:
        assert got, "waited for the holder to finish"
    t.join(5)
