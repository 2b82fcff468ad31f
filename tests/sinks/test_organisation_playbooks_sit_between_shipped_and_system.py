"""``agent.playbooks_file`` (relative to the config file) holds the organisation's playbooks, laid over
the shipped ones and under each system's own: per kind, each layer's keys win over the layer below.
Every playbook file is checked when the config is loaded and every problem is reported at once
(unknown kinds and keys, severity values, conditions, template fields). Severity rules can look at the
affected groups: how many, and which."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.evaluate import affected_groups
from agent.playbooks import Playbooks
from config.errors import ConfigError
from config.loader import load_config
from config.model import SystemConfig
from connectors.registry import sink_config_model
from metrics.fairness import GroupStats
from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, local_ticket, route

ORGANISATION = """
kinds:
  prediction_drift:
    title: "[ACME] Scores moved on {system_name}"
    severity:
      - {when: {risk_tier: [limited]}, severity: critical}
    controls: ["ACME-CTRL-7"]
"""
SYSTEM = """
kinds:
  prediction_drift:
    triage: ["Page the scoring desk."]
"""


def _with_playbooks(sc: Scenario, organisation: str | None, system: str | None = None) -> None:
    route(sc, {}, **({"playbooks": system} if system else {}))
    cfg = sc.config()
    if organisation:
        cfg["agent"]["playbooks_file"] = organisation
    sc.rewrite(cfg)


def test_three_layers_each_win_over_the_one_below(scenario: Scenario) -> None:
    sc = scenario
    (sc.dir / "playbooks").mkdir()
    (sc.dir / "playbooks" / "acme.yaml").write_text(ORGANISATION)
    (sc.dir / "scoring.yaml").write_text(SYSTEM)
    _with_playbooks(sc, "playbooks/acme.yaml", "scoring.yaml")  # both relative to the config file
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    ticket = local_ticket(sc, "prediction_drift")
    assert ticket["title"] == "[ACME] Scores moved on Test scoring model", "the organisation's title"
    assert ticket["severity"] == "critical", "the organisation's severity rule"
    assert ticket["content"]["controls"] == ["ACME-CTRL-7"]
    assert ticket["content"]["triage"] == ["Page the scoring desk."], "the system's own triage wins"
    drift = local_ticket(sc, "data_quality")
    assert drift["title"].startswith("Data quality problem on"), "kinds nobody overrides stay as shipped"
    a.close()


def test_every_problem_of_every_playbook_file_is_reported_at_once(scenario: Scenario) -> None:
    sc = scenario
    (sc.dir / "acme.yaml").write_text("""
kinds:
  drift:
    title: "Drift on {system_name}: {colum}"
    summary: "{} columns moved"
    severity:
      - {when: {risk_tier: [huge], min_affected_groups: 0}, severity: urgent}
    owner: "someone"
  driftt:
    title: "typo"
""")
    (sc.dir / "scoring.yaml").write_text("kinds:\n  bias:\n    summary: \"{affected\"\n")
    _with_playbooks(sc, "acme.yaml", "scoring.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(sc.config_path, sink_config=sink_config_model)
    messages = {p.path: p.message for p in err.value.problems}
    org = "agent.playbooks_file.kinds"
    assert sorted(messages) == sorted([
        f"{org}.drift.severity.0.when.risk_tier.0", f"{org}.drift.severity.0.when.min_affected_groups",
        f"{org}.drift.severity.0.severity", f"{org}.drift.owner", f"{org}.drift.title", f"{org}.drift.summary",
        f"{org}.driftt", "systems.0.incidents.playbooks.kinds.bias.summary",
    ]), messages
    assert "'critical', 'high', 'medium' or 'low'" in messages[f"{org}.drift.severity.0.severity"]
    assert "unknown key" in messages[f"{org}.drift.owner"]
    assert "unknown field {colum}" in messages[f"{org}.drift.title"]
    assert "drifted_count" in messages[f"{org}.drift.title"], "it lists the fields there are"
    assert "positional" in messages[f"{org}.drift.summary"]
    assert "unknown kind" in messages[f"{org}.driftt"]
    assert "not a valid template" in messages["systems.0.incidents.playbooks.kinds.bias.summary"]
    assert all(m.startswith(("acme.yaml: ", "scoring.yaml: ")) for m in messages.values()), "names the file"


def test_a_missing_organisation_file_is_a_config_error(scenario: Scenario) -> None:
    _with_playbooks(scenario, "nowhere.yaml")
    with pytest.raises(ConfigError, match=r"agent\.playbooks_file: cannot read .*nowhere\.yaml"):
        load_config(scenario.config_path, sink_config=sink_config_model)


def test_the_shipped_playbooks_pass_their_own_checks() -> None:
    from config.playbooks import read_playbooks

    kinds, problems = read_playbooks(Path(__file__).parents[2] / "config" / "playbooks" / "default.yaml")
    assert problems == [] and {"drift", "bias", "performance", "data_quality", "collector_down"} <= set(kinds)


def _system(scenario: Scenario, **changes: Any) -> SystemConfig:
    return SystemConfig.model_validate({**scenario.config()["systems"][0], **changes})


def test_severity_rules_can_use_the_number_and_the_names_of_affected_groups(scenario: Scenario) -> None:
    books = Playbooks(kinds={"bias": {"severity": [
        {"when": {"affected_groups": ["over-75s"]}, "severity": "critical"},
        {"when": {"min_affected_groups": 2}, "severity": "high"},
        {"severity": "low"},
    ]}})
    system = _system(scenario)
    assert books.severity("bias", system, 1.0, ["B"]) == "low"
    assert books.severity("bias", system, 1.0, ["B", "C"]) == "high"
    assert books.severity("bias", system, 1.0, ["A", "over-75s"]) == "critical"
    assert books.severity("bias", system, 1.0, []) == "low"
    # the shipped bias playbook raises a breach that affects several groups
    shipped = Playbooks()
    assert shipped.severity("bias", system, 1.0, ["B"]) == "medium"
    assert shipped.severity("bias", system, 1.0, ["B", "C"]) == "high"


def _group(name: str, rate: float, tpr: float = float("nan"), fpr: float = float("nan")) -> GroupStats:
    return GroupStats(group=name, count=100, selection_rate=rate, true_positive_rate=tpr, false_positive_rate=fpr,
                      judged=True, selection_rate_ci=(0, 1), true_positive_rate_ci=(0, 1),
                      false_positive_rate_ci=(0, 1))


def test_the_affected_groups_of_a_fairness_breach_are_every_group_beyond_the_threshold() -> None:
    groups = [_group("A", 0.6, 0.8, 0.1), _group("B", 0.42, 0.75, 0.12), _group("C", 0.55, 0.6, 0.3)]
    assert affected_groups("demographic_parity_difference", 0.1, groups) == ["B"]
    assert affected_groups("demographic_parity_ratio", 0.95, groups) == ["B", "C"]
    assert affected_groups("equal_opportunity_difference", 0.1, groups) == ["C"]
    assert affected_groups("equalized_odds_difference", 0.1, groups) == ["C"]
