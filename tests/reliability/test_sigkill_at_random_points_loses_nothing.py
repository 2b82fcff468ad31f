"""Kill the agent with SIGKILL at random points across collection, evaluation and delivery: afterwards no
window is skipped or judged twice, no incident is lost or duplicated, and the ledger verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.conftest import T0, Scenario

HOURS = 96
# drift switches on and off so incidents open, resolve and reopen along the way
SHIFTS = [2.0 if (h // 5) % 2 else 0.0 for h in range(HOURS)]


def _populate(sc: Scenario) -> None:
    for h, shift in enumerate(SHIFTS):
        sc.hour(T0 + timedelta(hours=h), n=600, shift=shift)


def _check(cfg: Path) -> subprocess.Popen[str]:
    now = (T0 + timedelta(hours=HOURS)).isoformat()
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "check", "--config", str(cfg), "--now", now],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})


def _windows(state_db: Path) -> int:
    if not state_db.exists():
        return 0
    engine = create_engine(f"sqlite:///{state_db}")
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM check_runs")).scalar_one())
    except Exception:
        return 0
    finally:
        engine.dispose()


def _state(state_db: Path, tickets: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{state_db}")
    with engine.connect() as c:
        windows = c.execute(text("SELECT window_start FROM check_runs ORDER BY window_start")).scalars().all()
        incidents = c.execute(text("SELECT kind, subject, status, opened_at FROM incidents ORDER BY id")).all()
        pending = c.execute(text("SELECT count(*) FROM outbox WHERE status != 'delivered'")).scalar_one()
    engine.dispose()
    timelines = {}
    for p in sorted(tickets.glob("*.json")):
        t = json.loads(p.read_text())
        timelines[(t["kind"], t["subject"])] = [e["action"] for e in t["timeline"]]
    return {"windows": windows, "incidents": [tuple(map(str, i)) for i in incidents], "pending": pending,
            "timelines": timelines}


@pytest.mark.slow
def test_sigkill_at_20_random_points_loses_and_duplicates_nothing(scenario: Scenario, tmp_path: Path) -> None:
    _populate(scenario)
    cfg = scenario.config()
    cfg["systems"][0]["window"]["max_catch_up"] = HOURS

    # the same data judged without interruption, in its own state and ticket folder
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean_cfg = json.loads(json.dumps(cfg))
    clean_cfg["agent"]["state_url"] = f"sqlite:///{clean_dir / 'state.db'}"
    clean_cfg["sinks"]["local"]["path"] = str(clean_dir / "tickets")
    (clean_dir / "config.yaml").write_text(yaml.safe_dump(clean_cfg))
    t0 = time.monotonic()
    proc = _check(clean_dir / "config.yaml")
    proc.wait(timeout=300)
    t0 = time.monotonic()
    _check(clean_dir / "config.yaml").wait(timeout=300)  # nothing left to do: start-up and exit only
    idle = time.monotonic() - t0
    assert proc.returncode in (0, 1), proc.stderr.read() if proc.stderr else ""
    expected = _state(clean_dir / "state.db", clean_dir / "tickets")
    assert len(expected["windows"]) == HOURS and expected["pending"] == 0

    scenario.rewrite(cfg)
    rng = random.Random(20261125)
    kills = mid_run = 0
    judged = 0
    state_db = scenario.dir / "state.db"
    for attempt in range(120):
        proc = _check(scenario.config_path)
        if attempt % 4 == 3:
            # some kills land at a random moment of start-up, reference loading or the first window
            time.sleep(rng.uniform(0.2, idle + 0.5))
        else:
            # most land between two commits: after 1-4 more windows, somewhere in the next window's
            # collection, evaluation or delivery
            target = judged + rng.randint(1, 4)
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and _windows(state_db) < target:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            judged = _windows(state_db)
            if judged >= HOURS and kills >= 20:
                break
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        now_judged = _windows(state_db)
        mid_run += now_judged > judged  # killed while windows were being judged and delivered
        judged = now_judged
        if kills >= 20 and mid_run >= 10:
            break
    print(f"\nSIGKILL: {kills} kills, {mid_run} while windows were being judged")
    assert kills >= 20, "the agent was killed at 20 points"
    assert mid_run >= 10, f"only {mid_run} kills landed while windows were being judged"
    for _ in range(5):  # let it finish what was left
        proc = _check(scenario.config_path)
        proc.wait(timeout=300)
        if proc.returncode in (0, 1):
            break
        time.sleep(0.5)
    assert proc.returncode in (0, 1), proc.stderr.read() if proc.stderr else ""
    got = _state(scenario.dir / "state.db", scenario.dir / "tickets")

    assert got["windows"] == expected["windows"], "every window judged exactly once"
    assert [i[:3] for i in got["incidents"]] == [i[:3] for i in expected["incidents"]], "same incidents"
    assert got["pending"] == 0, "every notification delivered"
    assert got["timelines"] == expected["timelines"], "no ticket lost, duplicated or updated twice"
    r = subprocess.run([sys.executable, "-m", "agent.cli", "evidence", "verify", str(scenario.config_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
