"""SQL windows land exactly on their UTC bounds when the database's session time zone is not UTC.

PostgreSQL ``timestamptz`` and MariaDB ``TIMESTAMP`` are compared in the session time zone; the
window bounds are bound as naive UTC, so a server (or database) defaulting to another zone used to
shift every window by its offset. The source sets its sessions to UTC on connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.model import SqlSourceConfig
from connectors.sources.sql import SqlSource
from tests.connectors.conftest import fresh_database

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# (id, instant): one just before the window, three inside (both edges' neighbours), one at its end
ROWS = [(1, START - timedelta(seconds=1)), (2, START), (3, START + timedelta(minutes=30)),
        (4, START + timedelta(minutes=59, seconds=59)), (5, START + timedelta(hours=1))]
INSIDE = [2, 3, 4]


def _read(url: str) -> pd.DataFrame:
    src = SqlSource(SqlSourceConfig(url=url, table="preds"), timestamp_column="ts")  # type: ignore[arg-type]
    try:
        return src.read_window(START, START + timedelta(hours=1), columns=["id", "ts"]).sort_values("id")
    finally:
        src.close()


def _instants(frame: pd.DataFrame) -> list[pd.Timestamp]:
    ts = pd.to_datetime(frame["ts"])
    return list(ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC"))


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgresql", tmp_path)


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("mariadb", tmp_path)


def test_postgresql_timestamptz_windows_ignore_a_non_utc_database_zone(pg: str) -> None:
    name = make_url(pg).database
    engine = create_engine(pg, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        # a database whose sessions default to UTC+05:30, as a server configured for India would
        c.execute(text(f"ALTER DATABASE {name} SET timezone TO 'Asia/Kolkata'"))
    engine.dispose()  # the setting applies to sessions opened from now on
    with engine.connect() as c:
        assert c.execute(text("SHOW timezone")).scalar_one() == "Asia/Kolkata"
        c.execute(text("CREATE TABLE preds (id integer, ts timestamptz)"))
        for i, at in ROWS:
            c.execute(text("INSERT INTO preds VALUES (:i, :t)"), {"i": i, "t": at})  # aware: an instant
    engine.dispose()
    got = _read(pg)
    assert got["id"].tolist() == INSIDE
    assert _instants(got) == [pd.Timestamp(at) for i, at in ROWS if i in INSIDE]


def test_mariadb_timestamp_windows_ignore_a_non_utc_session_zone(mariadb: str) -> None:
    engine = create_engine(mariadb)
    with engine.begin() as c:
        c.execute(text("SET time_zone = '+00:00'"))
        c.execute(text("CREATE TABLE preds (id INT, ts TIMESTAMP(3) NULL)"))
        for i, at in ROWS:
            c.execute(text("INSERT INTO preds VALUES (:i, :t)"), {"i": i, "t": at.replace(tzinfo=None)})
    engine.dispose()
    # a server whose default zone is UTC+05:30: every new session starts there
    shifted = mariadb + "?init_command=" + quote("SET time_zone = '+05:30'")
    probe = create_engine(shifted)
    with probe.connect() as c:
        assert c.execute(text("SELECT @@session.time_zone")).scalar_one() == "+05:30"
    probe.dispose()
    got = _read(shifted)
    assert got["id"].tolist() == INSIDE
    assert _instants(got) == [pd.Timestamp(at) for i, at in ROWS if i in INSIDE]
