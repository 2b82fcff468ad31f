"""A message renders the incident as it was when the change happened, not when the tool came back: an
``open`` queued while PagerDuty was down still triggers after a person acknowledged the incident (then
the acknowledgement follows), and a severity change waits in its own message rather than leaking into
the earlier ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.api import OversightRequest, oversee
from tests.conftest import T0, Scenario
from tests.fakes.http_server import Reply
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.pagerduty import FakePagerDuty
from tests.sinks.agent_rig import agent, incidents, outbox, route
from tests.sinks.conftest import LOOPBACK

KEY = "0123456789abcdef0123456789abcdef"


def test_open_queued_during_an_outage_triggers_before_the_acknowledgement(scenario: Scenario) -> None:
    pd = FakePagerDuty(routing_key=KEY).start()
    og = FakeOpsgenie(api_key="genie").start()
    try:
        route(scenario, {"pd": {"type": "pagerduty", "url": pd.url, "routing_key": KEY, "allowed_hosts": LOOPBACK},
                         "og": {"type": "opsgenie", "url": og.url, "api_key": "genie", "allowed_hosts": LOOPBACK}})
        scenario.hour(T0, shift=2.0)
        a = agent(scenario)
        now = T0 + timedelta(hours=1)
        pd.outage(Reply(503, {"status": "unavailable"}))
        og.outage(Reply(503, {"message": "unavailable"}))
        a.run_system(a.cfg.systems[0].id, now)
        wall = datetime.now(UTC)  # the API's acknowledgement delivers on the wall clock: stay on it
        a.deliver(wall)
        inc = next(i for i in incidents(a) if i.kind == "prediction_drift")
        assert inc.fingerprint not in pd.alerts, "PagerDuty is down: nothing reached it yet"
        # the on-call engineer saw the local ticket and acknowledged while PagerDuty was still down
        oversee(a, inc.id, "acknowledge", OversightRequest(by="ana@example.com", reason="on it"), "ops")
        pd.recover()
        og.recover()
        seen = len(pd.requests)
        a.deliver(wall + timedelta(hours=1))
        delivered = [r.json()["event_action"] for r in pd.requests[seen:] if r.json()["dedup_key"] == inc.fingerprint]
        assert delivered == ["trigger", "acknowledge"], "the queued open triggers; it is not sent as acknowledge"
        assert pd.alerts[inc.fingerprint]["status"] == "acknowledged"
        alert = og.open_alert(inc.fingerprint)
        assert alert is not None and alert["acknowledged"]
        assert {m.status for m in outbox(a, "pd")} == {"delivered"}
        # each message kept the incident's state of its own moment
        opened, acked = (m for m in outbox(a, "pd") if m.fingerprint == inc.fingerprint)
        assert (opened.payload["status"], acked.payload["status"]) == ("open", "acknowledged")
        a.close()
    finally:
        pd.stop()
        og.stop()
