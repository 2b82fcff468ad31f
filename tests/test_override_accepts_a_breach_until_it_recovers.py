"""Human oversight: an overridden breach resolves its incident and stays quiet until the metric recovers."""

from __future__ import annotations

from datetime import timedelta

from agent.api import OverrideRequest, oversee
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario


def _open_prediction_incidents(agent: Agent) -> list[int]:
    from sqlalchemy import select

    from agent.schema import Incident

    with agent.store.session() as s:
        return list(s.execute(select(Incident.id).where(Incident.kind == "prediction_drift",
                                                        Incident.status != "resolved")).scalars())


def test_override_resolves_and_suppresses_until_recovery(scenario: Scenario) -> None:
    sc = scenario
    for h, shift in enumerate([2.0, 2.0, 2.0, 0.0, 2.0]):
        sc.hour(T0 + timedelta(hours=h), shift=shift)
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    agent.run_system("scoring", T0 + timedelta(hours=1))
    (iid,) = _open_prediction_incidents(agent)
    body = OverrideRequest(by="risk.owner@example.com", reason="expected after the pricing change", state="ok")
    oversee(agent, iid, "override", body, "operator", state="ok")
    assert _open_prediction_incidents(agent) == []
    agent.run_system("scoring", T0 + timedelta(hours=3))  # still breaching: no new incident
    assert _open_prediction_incidents(agent) == [], "an accepted breach does not reopen while it persists"
    agent.run_system("scoring", T0 + timedelta(hours=5))  # recovered at hour 3, breached again at hour 4
    assert len(_open_prediction_incidents(agent)) == 1, "a new occurrence after recovery opens again"
    agent.close()
