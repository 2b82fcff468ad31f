"""A breach that lasts several windows opens ONE ticket in each real tool, and recovery resolves it:
Redmine (issue closed), Request Tracker (ticket resolved) and Alertmanager (alert fired, then ended)."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, am_alerts, incidents, outbox, redmine_issues, route, rt_tickets
from tests.sinks.conftest import (
    RealService,
    alertmanager_sink_config,
    redmine_sink_config,
    rt_sink_config,
)


def test_breach_opens_one_ticket_per_tool_and_recovery_resolves_them(
        scenario: Scenario, redmine: RealService, redmine_project: str, rt: RealService,
        alertmanager: RealService) -> None:
    sc = scenario
    route(sc, {"redmine": redmine_sink_config(redmine, redmine_project), "rt": rt_sink_config(rt),
               "am": alertmanager_sink_config(alertmanager)})
    sc.hour(T0)
    sc.hour(T0 + timedelta(hours=1), shift=2.0)
    sc.hour(T0 + timedelta(hours=2), shift=2.0)
    a = agent(sc)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=3))
    a.deliver(T0 + timedelta(hours=3))
    opened = [i for i in incidents(a) if i.kind == "prediction_drift"]
    assert len(opened) == 1
    fp = opened[0].fingerprint

    (issue,) = redmine_issues(redmine, redmine_project, fp)
    assert issue["subject"] == opened[0].title
    assert "What to check first" in issue["description"], "the playbook's content is in the ticket"
    assert issue["status"]["name"] == "New"
    (ticket,) = rt_tickets(rt, fp)
    assert ticket["Status"] == "new"
    (alert,) = am_alerts(alertmanager, fp)
    assert alert["status"]["state"] == "active"
    assert alert["labels"]["severity"] == opened[0].severity

    sc.hour(T0 + timedelta(hours=3))  # recovered
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=4))
    a.deliver(T0 + timedelta(hours=4))
    for sink in ("redmine", "rt", "am"):
        assert {m.status for m in outbox(a, sink)} == {"delivered"}, sink

    (issue,) = redmine_issues(redmine, redmine_project, fp)
    assert issue["status"]["name"] == "Closed"
    (ticket,) = rt_tickets(rt, fp)
    assert ticket["Status"] == "resolved"
    assert am_alerts(alertmanager, fp) == [], "the resolved alert has left Alertmanager's active list"
    a.close()
