"""`aims-agent modelcard`: the monitoring section of a model card, written from the configuration and the
live evidence: methods and thresholds, the latest window, the period's incidents, open issues and
pointers into the ledger. No source URL (it may hold credentials) is ever printed."""

from __future__ import annotations

from tests.conftest import Scenario
from tests.evidence.conftest import cli, run_hours


def test_model_card_section_reports_monitoring_from_the_ledger(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0, 2.0, 2.0], bias=3.0)
    agent.close()
    out = scenario.dir / "card.md"
    r = cli("modelcard", "--config", str(scenario.config_path), "scoring", "--days", "3650", "-o", str(out))
    assert r.returncode == 0, r.stderr
    card = out.read_text()
    for heading in ("## Monitoring", "### What is monitored", "### Methods and thresholds", "### Latest results",
                    "### Over the period", "### Incidents in the period", "### Open issues", "### Evidence"):
        assert heading in card
    assert "model `scorer` version `1.0.0`" in card
    assert "| fairness (group) | demographic_parity_difference" in card and "| 0.1 |" in card
    assert "3 windows judged, 0 failed checks." in card
    assert "| bias | group |" in card and "Incident #" in card  # the open bias incident
    assert "fairness on group is in **breach**" in card
    assert "iso42001:A.6.2.6" in card and "aims-agent evidence export" in card
    assert "sqlite:///" not in card and str(scenario.db) not in card
    assert "a sql source, table `predictions`" in card


def test_model_card_for_an_unknown_system_is_a_clear_error(scenario: Scenario) -> None:
    r = cli("modelcard", "--config", str(scenario.config_path), "nope")
    assert r.returncode == 2 and "no system 'nope'" in r.stderr
