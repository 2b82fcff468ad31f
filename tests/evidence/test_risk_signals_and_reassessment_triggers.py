"""Risk register entries from live evidence, and the re-assessment triggers: sustained drift, a new bias
breach and a model version change are each recorded once as evidence and raised as a `reassessment`
incident through the incident process (ticket, notification)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from sqlalchemy import select

from agent.risk import FIELDS, detect_model_changes, detect_reassessment_triggers, risk_register
from agent.runner import Agent
from agent.schema import EvidenceRecord, Incident
from config.loader import load_config
from tests.conftest import T0, Scenario
from tests.evidence.conftest import cli, run_hours


def _kinds(agent: Agent, kind: str) -> list[EvidenceRecord]:
    with agent.store.session() as s:
        return list(s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == kind)
                              .order_by(EvidenceRecord.seq)).scalars())


def _reassessments(agent: Agent) -> list[Incident]:
    with agent.store.session() as s:
        return list(s.execute(select(Incident).where(Incident.kind == "reassessment")).scalars())


def _sensitive_drift(sc: Scenario) -> None:
    """One of the three features moving is a dataset drift (x1 is the one the scenario shifts)."""
    cfg = sc.config()
    cfg["systems"][0]["checks"]["drift"]["drift_share"] = 0.3
    sc.rewrite(cfg)


def test_sustained_drift_triggers_one_reassessment(scenario: Scenario) -> None:
    _sensitive_drift(scenario)
    agent = run_hours(scenario, [0.0, 2.0, 2.0])
    now = T0 + timedelta(hours=4)
    assert detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents, now) == []
    scenario.hour(T0 + timedelta(hours=3), shift=2.0)
    agent.run_system("scoring", now)
    raised = detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents, now)
    assert sorted(t.subject for t in raised) == ["drift:dataset", "prediction_drift:score"]
    assert all("3 consecutive windows" in t.reason for t in raised)
    assert detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents, now) == []
    incidents = _reassessments(agent)
    assert sorted(i.subject for i in incidents) == ["drift:dataset", "prediction_drift:score"]
    assert all(i.status == "open" and "Re-assess" in i.title for i in incidents)
    trigger = _kinds(agent, "reassessment_trigger")[0]
    assert "iso42001:A.5.2" in trigger.controls
    assert agent.deliver(now) >= 1  # the re-assessment reaches the ticketing tool like any incident
    tickets = list((scenario.dir / "tickets").glob("*.md"))
    assert any("Re-assess" in t.read_text() for t in tickets)
    agent.close()


def test_new_bias_breach_triggers_a_reassessment(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0, 0.0], bias=3.0)
    raised = detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents,
                                          T0 + timedelta(hours=2))
    assert [t.subject for t in raised] == ["bias:group"]
    assert "new bias breach on group" in raised[0].reason
    assert detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents,
                                        T0 + timedelta(hours=2)) == []
    agent.close()


def test_model_version_change_between_config_loads_is_recorded_once(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0])
    assert detect_model_changes(agent.store, agent.cfg) == []
    agent.close()
    cfg = scenario.config()
    cfg["systems"][0]["model"]["version"] = "1.1.0"
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.record_config_loaded(str(scenario.config_path))
    changes = detect_model_changes(agent.store, agent.cfg, ledger=agent.ledger, incidents=agent.incidents)
    assert [(c.system_id, c.before, c.after) for c in changes] == [("scoring", "scorer 1.0.0", "scorer 1.1.0")]
    detect_model_changes(agent.store, agent.cfg, ledger=agent.ledger, incidents=agent.incidents)
    recorded = _kinds(agent, "model_version_changed")
    assert len(recorded) == 1 and recorded[0].payload["after"] == "scorer 1.1.0"
    assert "iso42001:A.6.2.5" in recorded[0].controls
    assert [i.subject for i in _reassessments(agent)] == ["model_version"]
    agent.close()


def test_risk_register_entries_carry_the_register_fields(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["systems"][0].update(risk_register_ids=["AIR-007"], affected_groups=["applicants by group"],
                             decisions=["loan approval"])
    scenario.rewrite(cfg)
    _sensitive_drift(scenario)
    agent = run_hours(scenario, [0.0, 2.0, 2.0, 2.0], bias=3.0)
    entries = risk_register(agent.store, agent.cfg, T0 + timedelta(days=1))
    agent.close()
    by = {e["risk_id"]: e for e in entries}
    drift = by["AIR-scoring-drift-dataset"]
    assert drift["current_state"] == "breach" and drift["windows_in_breach"] == 3 and drift["windows_judged"] == 4
    assert drift["likelihood"] == "almost certain" and drift["consequence"] == "minor" and drift["level"] == "high"
    assert drift["register_ids"] == ["AIR-007"] and "ISO 42001 A.6.2.6" in drift["linked_controls"]
    assert drift["review_date"] == (T0 + timedelta(days=8)).date().isoformat()  # an open incident: soon
    fair = by["AIR-scoring-fairness-group"]
    assert fair["objective_affected"] == "fairness" and fair["affected_parties"] == ["applicants by group"]
    assert set(FIELDS) <= set(drift)

    r = cli("risk", "export", "--config", str(scenario.config_path), "--format", "csv", "--days", "3650")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == FIELDS and {"AIR-scoring-drift-dataset", "AIR-scoring-fairness-group"} <= {
        x["risk_id"] for x in rows}
    r = cli("risk", "export", "--config", str(scenario.config_path), "--format", "json", "--days", "3650")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["system_id"] == "scoring"


def test_bias_trigger_is_logged_on_the_fairness_entry_of_its_own_subject(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0, 0.0], bias=3.0)
    now = T0 + timedelta(hours=2)
    [trigger] = detect_reassessment_triggers(agent.store, agent.cfg, agent.ledger, agent.incidents, now)
    with agent.store.transaction() as s:  # a trigger on another sensitive feature belongs to another entry
        other = agent.ledger.append(s, "reassessment_trigger", {"trigger_key": "bias:incident:999",
                                                                "subject": "bias:age", "reason": "age gap"},
                                    system_id="scoring", now=now)
    entries = {e["risk_id"]: e for e in risk_register(agent.store, agent.cfg, now)}
    agent.close()
    log = entries["AIR-scoring-fairness-group"]["record_log"]
    assert any(f"re-assessment trigger record {trigger.record_seq}:" in line for line in log), log
    assert not any(f"record {other.seq}:" in line for line in log)
    assert not any("re-assessment trigger" in line for line in entries["AIR-scoring-drift-dataset"]["record_log"])
