"""Shared fixtures: a synthetic monitored system on a SQLite prediction table, and the real services.

Integration fixtures FAIL (never skip) when their service is unreachable: the test command
provisions them, so a missing service is a broken environment, not a reason to pass.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

PG_URL = os.environ.get("AIMS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_URL = os.environ.get("AIMS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served over loopback TCP in a thread, with the agent's own uvicorn options; yields its URL."""
    import threading
    import time

    import uvicorn

    from agent.service import SERVER_OPTIONS

    port = free_port()
    options: dict[str, Any] = {**SERVER_OPTIONS, "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def make_rows(
    rng: np.random.Generator,
    n: int,
    start: datetime,
    *,
    shift: float = 0.0,
    bias: float = 0.0,
    span: timedelta = timedelta(hours=1),
) -> pd.DataFrame:
    """Synthetic scored applications: ``shift`` moves x1 (drift), ``bias`` lowers group B's scores."""
    group = rng.choice(["A", "B"], size=n)
    x1 = rng.normal(0.0 + shift, 1.0, size=n)
    x2 = rng.exponential(1.0, size=n)
    colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    logit = 0.8 * x1 - 0.3 * x2 - np.where(group == "B", bias, 0.0)
    score = 1 / (1 + np.exp(-logit))
    label = (rng.random(n) < 1 / (1 + np.exp(-0.8 * x1))).astype(int)
    offsets = np.sort(rng.integers(0, int(span.total_seconds() * 1000), size=n))
    ts = [(start + timedelta(milliseconds=int(o))).replace(tzinfo=None) for o in offsets]
    return pd.DataFrame(
        {
            "id": [uuid.uuid4().hex for _ in range(n)],
            "ts": ts,
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "group": group,
            "score": score,
            "label": label,
        }
    )


@dataclass
class Scenario:
    """A monitored system whose prediction log is a SQLite table the test writes into."""

    dir: Path
    db: Path
    config_path: Path
    rng: np.random.Generator

    def write(self, frame: pd.DataFrame) -> None:
        con = sqlite3.connect(self.db)
        try:
            frame.to_sql("predictions", con, if_exists="append", index=False)
        finally:
            con.close()

    def hour(self, start: datetime, n: int = 400, **kw: Any) -> None:
        self.write(make_rows(self.rng, n, start, **kw))

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_path.read_text())

    def rewrite(self, cfg: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(cfg))


def scenario_config(tmp: Path, db: Path, state_url: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "agent": {"state_url": state_url},
        "sinks": {"local": {"type": "local_folder", "path": str(tmp / "tickets")}},
        "systems": [
            {
                "id": "scoring",
                "name": "Test scoring model",
                "purpose": "Scores test applications.",
                "owner": {"team": "ML Platform", "contact": "ml-oncall@example.com"},
                "role": "provider",
                "risk_tier": "limited",
                "model": {"name": "scorer", "version": "1.0.0"},
                "schema": {
                    "id_column": "id",
                    "timestamp_column": "ts",
                    "features": {"x1": "numerical", "x2": "numerical", "colour": "categorical"},
                    "prediction": {"column": "score", "kind": "score", "threshold": 0.5},
                    "label": "label",
                    "sensitive": ["group"],
                },
                "reference": {"type": "file", "path": str(tmp / "reference.parquet")},
                "source": {"type": "sql", "url": f"sqlite:///{db}", "table": "predictions"},
                "window": {"size": "1h", "min_rows": 100, "start": T0.isoformat()},
                "schedule": {"every": "1h"},
                "checks": {
                    "drift": {"method": "auto"},
                    "fairness": {"enabled": True, "sensitive": ["group"], "threshold": 0.1, "min_group_size": 30},
                    "data_quality": {"max_missing_share": 0.2},
                },
            }
        ],
    }
    for key, value in overrides.items():
        cfg["systems"][0][key] = value
    return cfg


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    rng = np.random.default_rng(7)
    make_rows(rng, 3000, T0 - timedelta(days=3), span=timedelta(days=1)).to_parquet(
        tmp_path / "reference.parquet", index=False
    )
    db = tmp_path / "predictions.db"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(scenario_config(tmp_path, db, f"sqlite:///{tmp_path / 'state.db'}")))
    return Scenario(tmp_path, db, cfg_path, rng)


def _reachable(url: str) -> str | None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    problem = _reachable(PG_URL)
    if problem:
        pytest.fail(f"PostgreSQL at {PG_URL} is required (the test command provisions it): {problem}")
    name = f"aims_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
