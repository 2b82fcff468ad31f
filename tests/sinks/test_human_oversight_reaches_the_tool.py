"""The API's acknowledge and override keep working through remote sinks: acknowledging an incident
acknowledges the PagerDuty alert, overriding it to ``ok`` resolves it there."""

from __future__ import annotations

from datetime import timedelta

from agent.api import OverrideRequest, OversightRequest, oversee
from tests.conftest import T0, Scenario
from tests.fakes.pagerduty import FakePagerDuty
from tests.sinks.agent_rig import agent, incidents, outbox, route
from tests.sinks.conftest import LOOPBACK

KEY = "0123456789abcdef0123456789abcdef"


def test_acknowledge_and_override_reach_pagerduty(scenario: Scenario) -> None:
    pd = FakePagerDuty(routing_key=KEY).start()
    try:
        sc = scenario
        route(sc, {"pd": {"type": "pagerduty", "url": pd.url, "routing_key": KEY, "allowed_hosts": LOOPBACK}})
        sc.hour(T0, shift=2.0)
        a = agent(sc)
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
        a.deliver(T0 + timedelta(hours=1))
        inc = next(i for i in incidents(a) if i.kind == "prediction_drift")
        assert pd.alerts[inc.fingerprint]["status"] == "triggered"

        oversee(a, inc.id, "acknowledge", OversightRequest(by="ana@example.com", reason="looking into it"), "ops")
        assert pd.alerts[inc.fingerprint]["status"] == "acknowledged"
        oversee(a, inc.id, "override", OverrideRequest(by="ana@example.com", reason="known campaign", state="ok"),
                "ops", state="ok")
        assert pd.alerts[inc.fingerprint]["status"] == "resolved"
        actions = [m.action for m in outbox(a, "pd") if m.fingerprint == inc.fingerprint]
        assert actions == ["open", "update", "resolve"]
        assert {m.status for m in outbox(a, "pd")} == {"delivered"}
        a.close()
    finally:
        pd.stop()
