"""With an id watermark, rows written after their window was judged are counted once, in the next window.

Windows are still cut by timestamp; a window counts its rows that exist when it is judged, plus the rows
with older timestamps that arrived since the previous judgement (the late rows). The greatest id counted
commits with the window, so a restarted agent neither skips a row nor counts one twice.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario, make_rows


def _write(scenario: Scenario, rows: Any) -> None:
    con = sqlite3.connect(scenario.db)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS predictions (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, "
                    "ts TIMESTAMP, x1 REAL, x2 REAL, colour TEXT, \"group\" TEXT, score REAL, label INTEGER)")
        rows.to_sql("predictions", con, if_exists="append", index=False)
    finally:
        con.close()


def _run(scenario: Scenario, hours: int) -> list[Any]:
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)  # a fresh process each time
    try:
        return agent.run_system("scoring", T0 + timedelta(hours=hours, minutes=1))
    finally:
        agent.close()


@pytest.mark.parametrize("pushdown", [False, True])
def test_late_rows_are_counted_once_in_the_next_window_across_restarts(scenario: Scenario, pushdown: bool) -> None:
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["systems"][0]["source"].update({"watermark": {"column": "seq", "kind": "id"}, "pushdown": pushdown})
    scenario.rewrite(cfg)
    rng = np.random.default_rng(11)
    _write(scenario, make_rows(rng, 300, T0))
    first = _run(scenario, 1)
    assert [(o.rows, o.results.get("late_rows")) for o in first] == [(300, 0)]

    # 40 rows of the judged first hour arrive late, with 250 of the second hour
    _write(scenario, make_rows(rng, 40, T0, span=timedelta(minutes=59)))
    _write(scenario, make_rows(rng, 250, T0 + timedelta(hours=1)))
    second = _run(scenario, 2)
    assert [(o.rows, o.results.get("late_rows")) for o in second] == [(290, 40)]

    # a third hour judged twice (a restart re-running the tick): counted once
    _write(scenario, make_rows(rng, 200, T0 + timedelta(hours=2)))
    third = _run(scenario, 3)
    again = _run(scenario, 3)
    assert [(o.rows, o.results.get("late_rows")) for o in third] == [(200, 0)] and again == []
    total = sum(o.rows for o in [*first, *second, *third])
    assert total == 300 + 40 + 250 + 200, "every row counted, none twice"


def test_without_an_id_watermark_late_rows_are_not_counted(scenario: Scenario) -> None:
    rng = np.random.default_rng(12)
    _write(scenario, make_rows(rng, 300, T0))
    assert [o.rows for o in _run(scenario, 1)] == [300]
    _write(scenario, make_rows(rng, 40, T0, span=timedelta(minutes=59)))
    _write(scenario, make_rows(rng, 250, T0 + timedelta(hours=1)))
    assert [o.rows for o in _run(scenario, 2)] == [250]  # as documented: the time watermark alone drops them


def test_the_id_watermark_is_recorded_with_the_window(scenario: Scenario, tmp_path: Path) -> None:
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["systems"][0]["source"]["watermark"] = {"column": "seq", "kind": "id"}
    scenario.rewrite(cfg)
    _write(scenario, make_rows(np.random.default_rng(13), 120, T0))
    (outcome,) = _run(scenario, 1)
    assert outcome.results["id_range"] == [None, 120]
