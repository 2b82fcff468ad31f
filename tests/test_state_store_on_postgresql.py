"""The state store on a real PostgreSQL: migrations, a judged window, the ledger, restart safety."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from agent.evidence import verify_ledger
from agent.runner import Agent
from agent.store import Store
from config.loader import load_config
from tests.conftest import T0, Scenario

pytestmark = pytest.mark.integration


def _use_pg(sc: Scenario, url: str) -> None:
    cfg = sc.config()
    cfg["agent"]["state_url"] = url
    sc.rewrite(cfg)


def test_migrations_create_the_schema_and_are_idempotent(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()  # a second run is a no-op
    assert {"check_runs", "decisions", "evidence", "incidents", "outbox", "watermarks", "alembic_version"} <= set(
        store.tables())
    with store.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
    store.close()


def test_windows_judged_on_postgresql_survive_a_restart(scenario: Scenario, pg_url: str) -> None:
    _use_pg(scenario, pg_url)
    for h, shift in enumerate([0.0, 2.0, 0.0, 0.0]):
        scenario.hour(T0 + timedelta(hours=h), shift=shift)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    first = agent.run_system("scoring", T0 + timedelta(hours=2))
    agent.deliver(T0 + timedelta(hours=2))
    agent.close()
    assert [o.window_start for o in first] == [T0, T0 + timedelta(hours=1)]

    restarted = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    again = restarted.run_system("scoring", T0 + timedelta(hours=4))
    assert [o.window_start for o in again] == [T0 + timedelta(hours=2), T0 + timedelta(hours=3)], \
        "a restart neither skips nor re-judges a window"
    restarted.deliver(T0 + timedelta(hours=4))
    with restarted.store.session() as s:
        windows = s.execute(text("SELECT count(*), count(DISTINCT window_start) FROM check_runs")).one()
        assert tuple(windows) == (4, 4)
        assert verify_ledger(s) > 8
        opened = s.execute(text("SELECT count(*) FROM incidents")).scalar_one()
        assert opened >= 1
    restarted.close()
