"""Incremental collection with a persisted watermark, on the default SQLite store."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario


def test_restart_resumes_after_the_last_judged_window(scenario: Scenario) -> None:
    for h in range(5):
        scenario.hour(T0 + timedelta(hours=h), n=150)
    a = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    assert len(a.run_system("scoring", T0 + timedelta(hours=2, minutes=30))) == 2
    assert a.run_system("scoring", T0 + timedelta(hours=2, minutes=45)) == [], "nothing new is due"
    a.close()
    b = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    later = b.run_system("scoring", T0 + timedelta(hours=5))
    assert [o.window_start for o in later] == [T0 + timedelta(hours=h) for h in (2, 3, 4)]
    assert [o.rows for o in later] == [150, 150, 150]
    with b.store.session() as s:
        assert s.execute(text("SELECT count(*), sum(rows) FROM check_runs")).one() == (5, 750)
    b.close()


def test_a_source_outage_fails_the_check_and_the_window_is_retried(scenario: Scenario) -> None:
    scenario.hour(T0, n=150)
    cfg = scenario.config()
    good = cfg["systems"][0]["source"]["url"]
    cfg["systems"][0]["source"]["url"] = f"sqlite:///{scenario.dir}/missing-dir/none.db"
    scenario.rewrite(cfg)
    down = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    outcomes = [down.run_system("scoring", T0 + timedelta(hours=1, minutes=m))[0] for m in range(3)]
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert outcomes[-1].changes and outcomes[-1].changes[0].action == "open", "collector-down opens after 3"
    down.close()
    cfg["systems"][0]["source"]["url"] = good
    scenario.rewrite(cfg)
    up = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    (ok,) = up.run_system("scoring", T0 + timedelta(hours=1, minutes=5))
    assert ok.status != "failed" and ok.rows == 150 and ok.window_start == T0
    assert any(c.action == "resolve" for c in ok.changes)
    with up.store.session() as s:
        runs, fails = s.execute(text(
            "SELECT runs, failures FROM check_stats WHERE \"check\" = 'collection'")).one()
    assert (runs, fails) == (4, 3)
    up.close()
