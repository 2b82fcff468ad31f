"""The data path end to end: SQL source -> window -> metrics -> decision -> ticket + evidence + series."""

from __future__ import annotations

import json
from datetime import timedelta

from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario


def _agent(sc: Scenario) -> Agent:
    return Agent(load_config(sc.config_path), base_dir=sc.dir)


def _tickets(sc: Scenario) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((sc.dir / "tickets").glob("*.json"))]


def test_drift_breach_opens_one_ticket_and_recovery_resolves_it(scenario: Scenario) -> None:
    sc = scenario
    sc.hour(T0)  # clean
    sc.hour(T0 + timedelta(hours=1), shift=2.0)  # drift on x1 (and on the score)
    sc.hour(T0 + timedelta(hours=2), shift=2.0)  # still drifted: the same ticket, not a new one
    sc.hour(T0 + timedelta(hours=3))  # recovered
    agent = _agent(sc)
    outcomes = agent.run_system("scoring", T0 + timedelta(hours=4))
    agent.deliver(T0 + timedelta(hours=4))
    assert [o.status for o in outcomes][:1] != ["failed"]
    assert len(outcomes) == 4
    states = [{v.check: v.state for v in o.verdicts}["prediction_drift"] for o in outcomes]
    assert states == ["ok", "breach", "breach", "ok"]

    tickets = [t for t in _tickets(sc) if t["kind"] == "prediction_drift"]
    assert len(tickets) == 1, "one ticket per fingerprint"
    ticket = tickets[0]
    assert ticket["status"] == "resolved"
    assert [e["action"] for e in ticket["timeline"]] == ["open", "resolve"]  # type: ignore[index]
    (md,) = (sc.dir / "tickets").glob(f"*{str(ticket['fingerprint'])[:8]}.md")
    assert md.read_text().startswith("# [RESOLVED]")
    agent.close()


def test_recurrence_after_recovery_reopens_the_ticket(scenario: Scenario) -> None:
    sc = scenario
    for h, shift in enumerate([2.0, 0.0, 2.0]):
        sc.hour(T0 + timedelta(hours=h), shift=shift)
    agent = _agent(sc)
    agent.run_system("scoring", T0 + timedelta(hours=3))
    agent.deliver(T0 + timedelta(hours=3))
    ticket = next(t for t in _tickets(sc) if t["kind"] == "prediction_drift")
    assert [e["action"] for e in ticket["timeline"]] == ["open", "resolve", "open"]  # type: ignore[index]
    assert ticket["status"] == "open"
    assert ticket["reopened"] == 1
    agent.close()


def test_bias_breach_names_the_group_and_the_controls(scenario: Scenario) -> None:
    sc = scenario
    sc.hour(T0, n=1200, bias=1.5)
    agent = _agent(sc)
    (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    agent.deliver(T0 + timedelta(hours=1))
    fair = next(v for v in outcome.verdicts if v.check == "fairness")
    assert fair.state == "breach"
    assert fair.detail["affected"] == "B"
    ticket = next(t for t in _tickets(sc) if t["kind"] == "bias")
    content = ticket["content"]
    assert isinstance(content, dict)
    assert "ISO 42001 A.5.4" in content["controls"]
    assert content["owner"]["contact"] == "ml-oncall@example.com"
    assert content["triage"], "the playbook's triage checklist is in the ticket"
    agent.close()


def test_too_few_rows_is_insufficient_data_not_a_verdict(scenario: Scenario) -> None:
    sc = scenario
    sc.hour(T0, n=20, shift=5.0)
    agent = _agent(sc)
    (outcome,) = agent.run_system("scoring", T0 + timedelta(hours=1))
    states = {v.check: v.state for v in outcome.verdicts}
    assert states["drift"] == "insufficient_data"
    assert states["fairness"] == "insufficient_data"
    assert outcome.status != "failed"
    assert not (sc.dir / "tickets").exists() or not list((sc.dir / "tickets").glob("*.json"))
    agent.close()


def test_hysteresis_waits_for_consecutive_breaches(scenario: Scenario) -> None:
    sc = scenario
    cfg = sc.config()
    cfg["systems"][0]["checks"]["drift"]["hysteresis"] = {"open_after": 2, "close_after": 2}
    sc.rewrite(cfg)
    for h, shift in enumerate([2.0, 0.0, 2.0, 2.0, 0.0, 0.0]):
        sc.hour(T0 + timedelta(hours=h), shift=shift)
    agent = _agent(sc)
    outcomes = agent.run_system("scoring", T0 + timedelta(hours=6))
    opened = [i for i, o in enumerate(outcomes) for c in o.changes if c.action == "open" and "Prediction" in c.title]
    resolved = [
        i for i, o in enumerate(outcomes) for c in o.changes if c.action == "resolve" and "Prediction" in c.title
    ]
    assert opened == [3], "a lone breaching window does not open; the second in a row does"
    assert resolved == [5], "it closes only after two clean windows"
    agent.close()
