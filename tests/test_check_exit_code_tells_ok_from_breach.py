"""``aims-agent check`` for cron and CI: exit 0 when every decision is ok, 1 when one is in breach, 2 when a
window could not be read; ``--system`` judges that system only; ``--format json`` says the same."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta

from tests.conftest import T0, Scenario


def _check(sc: Scenario, *args: str) -> subprocess.CompletedProcess[str]:
    now = (T0 + timedelta(hours=2, minutes=5)).isoformat()
    return subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(sc.config_path), "--now",
                           now, *args], capture_output=True, text=True, timeout=180)


def _two_systems(sc: Scenario) -> None:
    """``scoring`` and ``other`` read the same table; ``other`` watches only the stable feature x2."""
    cfg = sc.config()
    other = json.loads(json.dumps(cfg["systems"][0]))
    other["id"] = "other"
    other["schema"]["features"] = {"x2": "numerical"}
    other["checks"]["fairness"]["enabled"] = False
    other["checks"]["drift"]["prediction"] = False  # the score moves with x1 (as does its range)
    other["checks"]["data_quality"]["enabled"] = False
    cfg["systems"].append(other)
    sc.rewrite(cfg)


def test_all_ok_exits_0_and_a_breach_exits_1(scenario: Scenario) -> None:
    _two_systems(scenario)
    scenario.hour(T0)
    scenario.hour(T0 + timedelta(hours=1))
    ok = _check(scenario, "--format", "json")
    assert ok.returncode == 0, (ok.stdout[-2000:], ok.stderr[-2000:])
    body = json.loads(ok.stdout)
    assert [(w["system"], w["status"]) for w in body["windows"]] == [
        ("scoring", "ok"), ("scoring", "ok"), ("other", "ok"), ("other", "ok")]
    assert body["decisions"] and {d["state"] for d in body["decisions"]} == {"ok"}

    # the next hour drifts on x1, and the score with it: scoring is in breach (exit 1), other (x2 only) is not
    scenario.hour(T0 + timedelta(hours=2), shift=2.5)
    now = (T0 + timedelta(hours=3, minutes=5)).isoformat()
    only_other = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(scenario.config_path),
                                 "--now", now, "--system", "other", "--format", "json"],
                                capture_output=True, text=True, timeout=180)
    assert only_other.returncode == 0, only_other.stdout[-2000:]
    assert {w["system"] for w in json.loads(only_other.stdout)["windows"]} == {"other"}
    breach = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(scenario.config_path),
                             "--now", now, "--system", "scoring"], capture_output=True, text=True, timeout=180)
    assert breach.returncode == 1, (breach.stdout[-2000:], breach.stderr[-2000:])
    assert re.search(r"scoring\s+prediction_drift\s+score\s+breach", breach.stdout), breach.stdout
    # nothing new is due: the decision still stands, so a re-run still exits 1
    again = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(scenario.config_path),
                            "--now", now], capture_output=True, text=True, timeout=180)
    assert again.returncode == 1 and "0 window(s) judged" in again.stdout


def test_an_unreadable_window_exits_2(scenario: Scenario) -> None:
    scenario.hour(T0)
    cfg = scenario.config()
    cfg["systems"][0]["source"]["table"] = "no_such_table"
    scenario.rewrite(cfg)
    r = _check(scenario)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert "no_such_table" in r.stderr and "Traceback" not in r.stderr
