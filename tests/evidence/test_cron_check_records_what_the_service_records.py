"""`aims-agent check` (cron mode) records what the service records: the configuration in force (once per
distinct configuration, not once per run), a model version change with its re-assessment incident, and
after its checks the re-assessment triggers of sustained drift and new bias breaches."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from tests.conftest import T0, Scenario
from tests.evidence.conftest import cli


def _kinds(sc: Scenario) -> list[str]:
    con = sqlite3.connect(sc.dir / "state.db")
    try:
        return [k for (k,) in con.execute("SELECT kind FROM evidence WHERE seq > 0 ORDER BY seq")]
    finally:
        con.close()


def _check(sc: Scenario, hours: int) -> None:
    r = cli("check", "--config", str(sc.config_path), "--now", (T0 + timedelta(hours=hours)).isoformat())
    assert r.returncode in (0, 1), r.stderr


def test_cron_checks_record_config_loads_model_changes_and_reassessment_triggers(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0]["checks"]["drift"]["drift_share"] = 0.3  # x1 moving alone is a dataset drift
    scenario.rewrite(cfg)
    for h, shift in enumerate([0.0, 2.0, 2.0, 2.0]):
        scenario.hour(T0 + timedelta(hours=h), shift=shift, bias=3.0)
    _check(scenario, 2)
    kinds = _kinds(scenario)
    assert kinds[0] == "config_loaded" and kinds.count("config_loaded") == 1
    assert "reassessment_trigger" in kinds  # the bias breach of the first windows
    _check(scenario, 4)
    kinds = _kinds(scenario)
    assert kinds.count("config_loaded") == 1  # the same configuration is not recorded again
    con = sqlite3.connect(scenario.dir / "state.db")
    subjects = {s for (s,) in con.execute("SELECT json_extract(payload, '$.subject') FROM evidence "
                                          "WHERE kind = 'reassessment_trigger'")}
    reassessments = {s for (s,) in con.execute("SELECT subject FROM incidents WHERE kind = 'reassessment'")}
    con.close()
    assert {"bias:group", "drift:dataset"} <= subjects and {"bias:group", "drift:dataset"} <= reassessments

    cfg = scenario.config()
    cfg["systems"][0]["model"]["version"] = "1.1.0"
    scenario.rewrite(cfg)
    _check(scenario, 4)
    kinds = _kinds(scenario)
    assert kinds.count("config_loaded") == 2 and kinds.count("model_version_changed") == 1
    con = sqlite3.connect(scenario.dir / "state.db")
    assert con.execute("SELECT count(*) FROM incidents WHERE kind = 'reassessment' AND subject = 'model_version'"
                       ).fetchone() == (1,)
    con.close()
    _check(scenario, 4)
    assert _kinds(scenario).count("model_version_changed") == 1
