"""Nothing stale is exported: a system removed from the config, a feature no longer monitored, and a
family the last window did not produce all disappear from /metrics."""

from __future__ import annotations

import copy
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from agent.runner import Agent
from agent.service import Service
from config.loader import parse_config
from tests.conftest import T0, Scenario


def _series(agent: Agent) -> list[tuple[str, dict[str, str]]]:
    text = Service(agent, run_on_start=False).exposition.render().decode()
    return [(f.name, s.labels) for f in text_string_to_metric_families(text) for s in f.samples]


def _judged(scenario: Scenario, cfg: dict[str, object], hours: int) -> Agent:
    agent = Agent(parse_config(cfg, base_dir=scenario.dir), base_dir=scenario.dir)
    for system in agent.cfg.systems:
        outcomes = agent.run_system(system.id, T0 + timedelta(hours=hours))
        assert all(o.status != "failed" for o in outcomes)
    return agent


def test_a_system_removed_from_the_config_stops_being_exported(scenario: Scenario) -> None:
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h), shift=2.0)
    both = scenario.config()
    other = copy.deepcopy(both["systems"][0])
    other["id"] = "retired"
    both["systems"].append(other)
    agent = _judged(scenario, both, 2)
    try:
        assert any(lbl.get("system") == "retired" for _, lbl in _series(agent))
    finally:
        agent.close()
    one = scenario.config()  # the same store, `retired` no longer configured
    agent = Agent(parse_config(one, base_dir=scenario.dir), base_dir=scenario.dir)
    try:
        series = _series(agent)
        assert not [s for s in series if s[1].get("system") == "retired"]
        assert any(lbl.get("system") == "scoring" for _, lbl in series)
    finally:
        agent.close()


def test_a_feature_removed_from_the_config_stops_being_exported(scenario: Scenario) -> None:
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h))
    agent = _judged(scenario, scenario.config(), 2)
    try:
        drift = {lbl["feature"] for name, lbl in _series(agent) if name == "aims_feature_drift_score"}
        assert drift == {"x1", "x2", "colour"}
    finally:
        agent.close()
    cfg = scenario.config()
    del cfg["systems"][0]["schema"]["features"]["x2"]
    agent = Agent(parse_config(cfg, base_dir=scenario.dir), base_dir=scenario.dir)
    try:
        drift = {lbl["feature"] for name, lbl in _series(agent) if name.startswith("aims_feature_drift_")}
        assert drift == {"x1", "colour"}, "x2 disappears before any new window is judged"
    finally:
        agent.close()


def test_families_the_last_window_did_not_produce_stop_being_exported(scenario: Scenario) -> None:
    scenario.hour(T0, shift=2.0)
    scenario.hour(T0 + timedelta(hours=1), n=20)  # under window.min_rows: no drift, no fairness
    agent = Agent(parse_config(scenario.config(), base_dir=scenario.dir), base_dir=scenario.dir)
    try:
        agent.run_system("scoring", T0 + timedelta(hours=1))
        names = {name for name, _ in _series(agent)}
        assert {"aims_feature_drift_score", "aims_fairness_group_rows", "aims_dataset_drift_share"} <= names
        agent.run_system("scoring", T0 + timedelta(hours=2))
        series = _series(agent)
        names = {name for name, _ in series}
        assert not names & {"aims_feature_drift_score", "aims_feature_drift_detected", "aims_dataset_drift_share",
                            "aims_fairness_group_rows", "aims_fairness_group_rate", "aims_fairness_metric"}
        rows = [lbl for name, lbl in series if name == "aims_window_rows"]
        assert rows == [{"system": "scoring"}], "the window itself is still described"
    finally:
        agent.close()
