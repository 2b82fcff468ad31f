"""Fresh databases per test on every backend the SQL source is tested against.

PostgreSQL and MariaDB are the machine's own services (provisioned by ``tests/services/provision.sh``);
a test that cannot reach them FAILS. SQLite and DuckDB are files in the test's folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import MARIADB_URL, PG_URL

BACKENDS = ["sqlite", "duckdb", "postgresql", "mariadb"]


def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'src.db'}"
        return
    if backend == "duckdb":
        yield f"duckdb:///{tmp / 'src.duckdb'}"
        return
    base = make_url(PG_URL if backend == "postgresql" else MARIADB_URL)
    name = f"aims_conn_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE {name}" + (" WITH (FORCE)" if backend == "postgresql" else "")))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)
