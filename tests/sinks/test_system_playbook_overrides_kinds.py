"""``systems[].incidents.playbooks`` points at a YAML whose kinds override the shipped ones for that
system only: the keys it sets win, the rest (e.g. controls) stay. A missing file is a config error at
load; one that becomes unreadable while the agent runs falls back to the shipped playbooks rather than
losing the incident."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from agent.playbooks import Playbooks
from config.errors import ConfigError
from config.model import SystemConfig
from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, local_ticket, route

OVERRIDE = """
kinds:
  prediction_drift:
    title: "Scores moved on {system_name} ({model_name} {model_version})"
    triage:
      - "Page the credit-risk desk before touching the model."
"""


def test_override_replaces_the_keys_it_sets_and_keeps_the_rest(scenario: Scenario) -> None:
    sc = scenario
    override = sc.dir / "credit-playbooks.yaml"
    override.write_text(OVERRIDE)
    route(sc, {}, playbooks=str(override))
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    ticket = local_ticket(sc, "prediction_drift")
    assert ticket["title"] == "Scores moved on Test scoring model (scorer 1.0.0)"
    content = ticket["content"]
    assert isinstance(content, dict)
    assert content["triage"] == ["Page the credit-risk desk before touching the model."]
    assert content["controls"] == ["ISO 42001 A.6.2.6", "ISO 42001 A.9.4"], "kept from the shipped playbook"
    a.close()


def test_missing_override_is_a_config_error_at_load(scenario: Scenario) -> None:
    sc = scenario
    route(sc, {}, playbooks=str(sc.dir / "missing.yaml"))
    with pytest.raises(ConfigError) as err:
        agent(sc)
    assert [p.path for p in err.value.problems] == ["systems.0.incidents.playbooks"]
    assert "missing.yaml" in str(err.value)


def test_override_unreadable_at_run_time_falls_back_to_the_shipped_playbooks(
        scenario: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    sc = scenario
    override = sc.dir / "credit-playbooks.yaml"
    override.write_text(OVERRIDE)
    route(sc, {}, playbooks=str(override))
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    override.unlink()  # gone after the config was checked
    with caplog.at_level(logging.ERROR, logger="aims.incidents"):
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    assert str(local_ticket(sc, "prediction_drift")["title"]).startswith("Prediction drift on")
    assert "playbook override" in caplog.text
    problems = Playbooks().check([a.cfg.systems[0]])
    assert problems and problems[0].path.endswith("incidents.playbooks")
    a.close()


def test_override_kinds_must_be_mappings(tmp_path: object, scenario: Scenario) -> None:
    bad = scenario.dir / "bad.yaml"
    bad.write_text("kinds:\n  drift: just a string\n")
    system = SystemConfig.model_validate({**scenario.config()["systems"][0], "incidents": {"playbooks": str(bad)}})
    with pytest.raises(ConfigError, match=r"kinds\.drift.*valid dictionary"):
        Playbooks().for_system(system)
