"""Incidents of an EU AI Act high-risk system carry the Art. 73 serious-incident assessment: the three
reporting deadlines counted from the incident's detection (15 days, Art. 73(2); 2 days for a widespread
infringement or critical infrastructure, Art. 73(3); 10 days for a death, Art. 73(4)), the 2-day clock
as the applicable one when the system is critical infrastructure, and the duty of the organisation's
role: a deployer informs the provider first (Art. 26(5), naming `model.provider_contact`), a provider
reports to the market surveillance authority (Art. 73(1)). A rise in severity keeps the clock of the
first detection. A system that is not high-risk gets none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.decisions import Verdict
from agent.playbooks import Playbooks, serious_incident_assessment
from agent.runner import Agent
from config.loader import load_config
from config.model import SystemConfig
from tests.conftest import T0, Scenario, scenario_config

# late on 20 February 2026 (not a leap year): the 10- and 15-day deadlines fall in March
AWARE = datetime(2026, 2, 20, 23, 15, 30, tzinfo=UTC)
HIGH_RISK: dict[str, Any] = {"risk_tier": "high", "eu_ai_act_high_risk": True}
VENDOR = "vendor-support@example.com"
QUESTION = ("Is this a serious incident (Art. 3(49)): death or serious harm to health, serious and irreversible "
            "disruption of critical infrastructure, infringement of obligations protecting fundamental rights, "
            "or serious harm to property or the environment?")
PROVIDER_DUTY = ("As provider: report a serious incident to the market surveillance authority of each Member "
                 "State where it occurred (Art. 73(1)); an incomplete initial report is allowed (Art. 73(5)); "
                 "do not alter the system in a way that affects cause analysis before informing the "
                 "authorities (Art. 73(6)): snapshot model, config and logs first.")


def deployer_duty(contact: str) -> str:
    return (f"As deployer: if serious, inform the provider first and immediately ({contact}), then the "
            "importer/distributor and the market surveillance authority (Art. 26(5)); if the provider cannot "
            "be reached, the provider's Art. 73 duties are yours (Art. 26(5)); suspend use on a suspected "
            "Art. 79(1) risk.")


def _system(**changes: Any) -> SystemConfig:
    raw = scenario_config(Path("/srv/aims"), Path("/srv/aims/predictions.db"), "sqlite://")["systems"][0]
    return SystemConfig.model_validate({**raw, **changes})


def _verdict() -> Verdict:
    return Verdict(check="fairness", subject="group", state="breach", value=0.3, threshold=0.1,
                   summary="demographic_parity_difference is 0.300 (threshold 0.100)")


def test_the_three_deadlines_are_15_10_and_2_days_after_detection() -> None:
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="provider"), AWARE)
    assert eu["assessment_required"] is True
    assert eu["question"] == QUESTION
    assert eu["aware_at"] == "2026-02-20T23:15:30+00:00"
    assert eu["deadlines"] == {
        "general_art_73_2": "2026-03-07T23:15:30+00:00",
        "death_art_73_4": "2026-03-02T23:15:30+00:00",
        "widespread_or_critical_infrastructure_art_73_3": "2026-02-22T23:15:30+00:00",
    }
    assert eu["critical_infrastructure"] is False
    assert eu["applicable_deadline"] == "2026-03-07T23:15:30+00:00", "the general 15-day clock"


def test_critical_infrastructure_makes_the_2_day_clock_the_applicable_one() -> None:
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="provider", critical_infrastructure=True), AWARE)
    assert eu["critical_infrastructure"] is True
    assert eu["applicable_deadline"] == "2026-02-22T23:15:30+00:00"
    assert eu["deadlines"]["general_art_73_2"] == "2026-03-07T23:15:30+00:00", "the others are still listed"
    assert eu["deadlines"]["death_art_73_4"] == "2026-03-02T23:15:30+00:00"


def test_a_system_that_is_not_high_risk_gets_no_assessment() -> None:
    books = Playbooks()
    plain = books.render(system=_system(role="deployer", critical_infrastructure=True), verdict=_verdict(),
                         window=None, opened_at=AWARE, links={})
    assert "eu_ai_act" not in plain.data
    assert "EU AI Act serious-incident assessment" not in plain.body_markdown
    high = books.render(system=_system(**HIGH_RISK, role="deployer"), verdict=_verdict(), window=None,
                        opened_at=AWARE, links={})
    assert high.data["eu_ai_act"] == serious_incident_assessment(_system(**HIGH_RISK, role="deployer"), AWARE)
    assert "## EU AI Act serious-incident assessment (Art. 73)" in high.body_markdown


def test_a_deployer_informs_the_provider_first_at_its_contact() -> None:
    model = {"name": "scorer", "version": "1.0.0", "provider_contact": VENDOR}
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="deployer", model=model), AWARE)
    assert eu["role"] == "deployer"
    assert eu["duties"] == [deployer_duty(VENDOR)], "no provider's report to the authority"


def test_a_deployer_without_a_provider_contact_is_told_the_inventory_has_none() -> None:
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="deployer"), AWARE)
    assert eu["duties"] == [deployer_duty("the provider (no contact in the inventory)")]


def test_a_provider_reports_to_the_market_surveillance_authority() -> None:
    model = {"name": "scorer", "version": "1.0.0", "provider_contact": VENDOR}
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="provider", model=model), AWARE)
    assert eu["role"] == "provider"
    assert eu["duties"] == [PROVIDER_DUTY], "a provider informs no provider; its contact is not used"


def test_provider_and_deployer_has_both_duties_deployer_first() -> None:
    model = {"name": "scorer", "version": "1.0.0", "provider_contact": VENDOR}
    eu = serious_incident_assessment(_system(**HIGH_RISK, role="provider_and_deployer", model=model), AWARE)
    assert eu["role"] == "provider_and_deployer"
    assert eu["duties"] == [deployer_duty(VENDOR), PROVIDER_DUTY]
    bare = serious_incident_assessment(_system(**HIGH_RISK, role="provider_and_deployer"), AWARE)
    assert bare["duties"] == [deployer_duty("the provider (no contact in the inventory)"), PROVIDER_DUTY]


def test_a_real_incident_carries_the_assessment_from_its_detection_time(scenario: Scenario) -> None:
    sc = scenario
    cfg = sc.config()
    cfg["systems"][0].update(HIGH_RISK, role="deployer", critical_infrastructure=True,
                             model={"name": "scorer", "version": "1.0.0", "provider_contact": VENDOR})
    sc.rewrite(cfg)
    sc.hour(T0, n=1200, bias=1.5)
    detected = T0 + timedelta(hours=1)
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    agent.run_system("scoring", detected)
    agent.deliver(detected)
    agent.close()
    (json_path,) = (sc.dir / "tickets").glob("scoring-bias-*.json")
    eu = json.loads(json_path.read_text())["content"]["eu_ai_act"]
    assert eu == {
        "assessment_required": True,
        "question": QUESTION,
        "aware_at": "2026-01-05T01:00:00+00:00",
        "deadlines": {
            "general_art_73_2": "2026-01-20T01:00:00+00:00",
            "widespread_or_critical_infrastructure_art_73_3": "2026-01-07T01:00:00+00:00",
            "death_art_73_4": "2026-01-15T01:00:00+00:00",
        },
        "applicable_deadline": "2026-01-07T01:00:00+00:00",
        "critical_infrastructure": True,
        "role": "deployer",
        "duties": [deployer_duty(VENDOR)],
    }
    md = json_path.with_suffix(".md").read_text()
    assert ("## EU AI Act serious-incident assessment (Art. 73)\n\n" + QUESTION + "\n\n"
            "- Aware since: 2026-01-05T01:00:00+00:00\n"
            "- Report by (general, 15 days): 2026-01-20T01:00:00+00:00\n"
            "- Report by (widespread infringement or critical infrastructure, 2 days): 2026-01-07T01:00:00+00:00\n"
            "- Report by (death, 10 days): 2026-01-15T01:00:00+00:00\n"
            f"- {deployer_duty(VENDOR)}\n") in md


def test_a_rise_in_severity_keeps_the_clock_of_the_first_detection(scenario: Scenario) -> None:
    sc = scenario
    (sc.dir / "scoring.yaml").write_text("kinds:\n  bias:\n    severity:\n"
                                         "      - {when: {min_ratio: 3.0}, severity: critical}\n"
                                         "      - {severity: low}\n")
    cfg = sc.config()
    cfg["systems"][0].update(HIGH_RISK, role="provider", incidents={"playbooks": "scoring.yaml"})
    sc.rewrite(cfg)
    sc.hour(T0, n=1200, bias=0.6)  # a small gap: low
    sc.hour(T0 + timedelta(hours=1), n=1200, bias=1.5)  # a large one: critical, the same incident
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    agent.run_system("scoring", T0 + timedelta(hours=1))
    agent.run_system("scoring", T0 + timedelta(hours=2))
    agent.deliver(T0 + timedelta(hours=2))
    agent.close()
    (json_path,) = (sc.dir / "tickets").glob("scoring-bias-*.json")
    ticket = json.loads(json_path.read_text())
    assert [(e["action"], e["severity"]) for e in ticket["timeline"]] == [("open", "low"), ("update", "critical")]
    eu = ticket["content"]["eu_ai_act"]
    assert eu["aware_at"] == "2026-01-05T01:00:00+00:00", "detected in the first run, not the second"
    assert eu["applicable_deadline"] == "2026-01-20T01:00:00+00:00"
    assert eu["duties"] == [PROVIDER_DUTY]
