"""Ground truth arrives late: label checks wait for it, join it on the prediction id, and ignore stragglers."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pandas as pd

from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario, make_rows


def _configure(sc: Scenario, *, source: bool, max_delay: str = "3h") -> None:
    cfg = sc.config()
    s = cfg["systems"][0]
    s["checks"]["performance"] = {"enabled": True, "metric": "accuracy", "min": 0.6, "min_labels": 100}
    s["checks"]["fairness"]["metric"] = "equalized_odds_difference"
    labels: dict[str, object] = {"max_delay": max_delay}
    if source:
        labels.update({"source": {"type": "sql", "url": f"sqlite:///{sc.db}", "table": "ground_truth"},
                       "id_column": "request_id", "column": "outcome", "timestamp_column": "labelled_at"})
    s["labels"] = labels
    sc.rewrite(cfg)


def _write_labels(sc: Scenario, preds: pd.DataFrame, delay: timedelta, *, flip: bool = False) -> None:
    labels = pd.DataFrame({"request_id": preds["id"], "outcome": 1 - preds["label"] if flip else preds["label"],
                           "labelled_at": preds["ts"] + delay})
    con = sqlite3.connect(sc.db)
    labels.to_sql("ground_truth", con, if_exists="append", index=False)
    con.close()


def test_label_checks_wait_for_the_delay_then_use_joined_labels(scenario: Scenario) -> None:
    sc = scenario
    _configure(sc, source=True)
    preds = make_rows(sc.rng, 600, T0)
    sc.write(preds.drop(columns=["label"]))  # the prediction log has no ground truth
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    (first,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    assert first.results["phase"] == "predictions"
    assert {v.check for v in first.verdicts} >= {"drift", "data_quality"}
    assert "performance" not in {v.check for v in first.verdicts}, "performance waits for labels"
    _write_labels(sc, preds, timedelta(hours=2))
    early = agent.run_system("scoring", T0 + timedelta(hours=3, minutes=59))
    assert all(o.results.get("phase") == "predictions" for o in early), "not before end + max_delay"
    (labelled,) = [o for o in agent.run_system("scoring", T0 + timedelta(hours=4))
                   if o.results.get("phase") == "labels"]
    assert labelled.results["phase"] == "labels"
    assert labelled.results["labelled_rows"] == 600
    perf = next(v for v in labelled.verdicts if v.check == "performance")
    assert perf.state in ("ok", "breach") and perf.value is not None
    expected = float(((preds["score"] >= 0.5).astype(int) == preds["label"]).mean())
    assert abs(perf.value - expected) < 1e-12
    assert any(v.check == "fairness" for v in labelled.verdicts), "equalized odds needs labels: judged now"
    agent.close()


def test_labels_later_than_the_delay_are_ignored(scenario: Scenario) -> None:
    sc = scenario
    _configure(sc, source=True, max_delay="1h")
    preds = make_rows(sc.rng, 400, T0)
    sc.write(preds.drop(columns=["label"]))
    _write_labels(sc, preds.iloc[:150], timedelta(minutes=30))
    _write_labels(sc, preds.iloc[150:], timedelta(hours=5))  # too late to count
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    outcomes = agent.run_system("scoring", T0 + timedelta(hours=6))
    labelled = next(o for o in outcomes if o.results.get("phase") == "labels" and o.window_start == T0)
    assert labelled.results["labelled_rows"] == 150
    agent.close()


def test_too_few_labels_is_insufficient_not_a_breach(scenario: Scenario) -> None:
    sc = scenario
    _configure(sc, source=True)
    preds = make_rows(sc.rng, 400, T0)
    sc.write(preds.drop(columns=["label"]))
    _write_labels(sc, preds.iloc[:40], timedelta(minutes=10), flip=True)  # all wrong, but only 40
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    outcomes = agent.run_system("scoring", T0 + timedelta(hours=5))
    perf = next(v for o in outcomes if o.window_start == T0 for v in o.verdicts if v.check == "performance")
    assert perf.state == "insufficient_data"
    assert "40 labelled rows" in perf.summary
    agent.close()


def test_labels_filled_into_the_prediction_table_are_picked_up_on_the_second_look(scenario: Scenario) -> None:
    sc = scenario
    _configure(sc, source=False, max_delay="2h")
    preds = make_rows(sc.rng, 500, T0)
    sc.write(preds.assign(label=None))
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    agent.run_system("scoring", T0 + timedelta(hours=1))
    con = sqlite3.connect(sc.db)
    con.executemany("UPDATE predictions SET label = ? WHERE id = ?",
                    [(int(lbl), i) for i, lbl in zip(preds["id"], preds["label"], strict=True)])
    con.commit()
    con.close()
    (labelled,) = [o for o in agent.run_system("scoring", T0 + timedelta(hours=3))
                   if o.results.get("phase") == "labels"]
    assert labelled.results["labelled_rows"] == 500
    agent.close()
