"""The source database down, and the state database restarted: checks fail cleanly and are retried;
afterwards no window is skipped or judged twice and the ledger verifies."""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from agent.evidence import verify_ledger
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import PG_URL, T0, Scenario, make_rows
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def _source_table(url: str, rows: object) -> None:
    engine = create_engine(url)
    rows.to_sql("predictions", engine, index=False, if_exists="append")  # type: ignore[attr-defined]
    engine.dispose()


def test_source_database_down_fails_checks_then_catches_up(scenario: Scenario, pg_url: str) -> None:
    for h in range(6):
        _source_table(pg_url, make_rows(scenario.rng, 200, T0 + timedelta(hours=h)))
    proxy = TcpProxy(5432)
    db = pg_url.rsplit("/", 1)[1]
    cfg = scenario.config()
    cfg["systems"][0]["source"] = {"type": "sql", "table": "predictions", "connect_timeout_s": 2,
                                   "url": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{db}"}
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    assert [o.status != "failed" for o in agent.run_system("scoring", T0 + timedelta(hours=2))] == [True, True]
    proxy.down()
    for minute in range(4):
        outcomes = agent.run_system("scoring", T0 + timedelta(hours=4, minutes=minute))
        assert [(o.status, o.window_start) for o in outcomes] == [("failed", T0 + timedelta(hours=2))], [
            (o.status, o.rows, o.error) for o in outcomes]
    assert agent.decisions()[0]["state"] in ("breach", "ok", "warning", "insufficient_data")
    collection = next(d for d in agent.decisions() if d["check"] == "collection")
    assert collection["state"] == "breach", "the outage itself is an incident (collector down)"
    proxy.up()
    done = agent.run_system("scoring", T0 + timedelta(hours=6))
    assert [o.window_start for o in done] == [T0 + timedelta(hours=h) for h in range(2, 6)]
    assert all(o.rows == 200 for o in done)
    with agent.store.session() as s:
        assert s.execute(text("SELECT count(*), count(DISTINCT window_start) FROM check_runs")).one() == (6, 6)
        assert verify_ledger(s) > 0
    collection = next(d for d in agent.decisions() if d["check"] == "collection")
    assert collection["state"] == "ok"
    agent.close()
    proxy.down()


def test_state_database_restart_is_survived(scenario: Scenario) -> None:
    """A real restart of the PostgreSQL server holding the state store, between two ticks."""
    name = f"aims_restart_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        for h in range(4):
            scenario.hour(T0 + timedelta(hours=h), n=200)
        cfg = scenario.config()
        cfg["agent"]["state_url"] = url
        scenario.rewrite(cfg)
        agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
        assert len(agent.run_system("scoring", T0 + timedelta(hours=2))) == 2
        version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                       timeout=120)
        later = agent.run_system("scoring", T0 + timedelta(hours=4))
        assert [o.window_start for o in later] == [T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
        with agent.store.session() as s:
            assert s.execute(text("SELECT count(DISTINCT window_start), count(*) FROM check_runs")).one() == (4, 4)
            assert verify_ledger(s) > 0
        agent.close()
    finally:
        admin.dispose()
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
