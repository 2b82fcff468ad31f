"""A tool that goes down mid-run loses nothing and duplicates nothing: the outbox keeps the messages,
/metrics shows them pending, a restarted agent (a new Agent on the same state store) delivers them once
the tool is back, and the tool ends with one ticket, resolved."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, am_alerts, incidents, metrics, outbox, redmine_issues, route, rt_tickets
from tests.sinks.conftest import (
    RealService,
    alertmanager_sink_config,
    redmine_sink_config,
    rt_sink_config,
)


def _tool(name: str, request: pytest.FixtureRequest) -> tuple[RealService, dict[str, Any], Callable[[str], list[Any]]]:
    if name == "redmine":
        rm: RealService = request.getfixturevalue("redmine")
        project: str = request.getfixturevalue("redmine_project")
        return rm, redmine_sink_config(rm, project), lambda fp: redmine_issues(rm, project, fp)
    if name == "rt":
        rt: RealService = request.getfixturevalue("rt")
        return rt, rt_sink_config(rt), lambda fp: rt_tickets(rt, fp)
    am: RealService = request.getfixturevalue("alertmanager")
    return am, alertmanager_sink_config(am), lambda fp: am_alerts(am, fp)


@pytest.mark.integration
@pytest.mark.parametrize("tool", ["alertmanager", "rt", "redmine"])
def test_sink_outage_and_agent_restart_lose_nothing(tool: str, scenario: Scenario,
                                                   request: pytest.FixtureRequest) -> None:
    service, sink_cfg, remote = _tool(tool, request)
    sc = scenario
    route(sc, {"tool": sink_cfg})
    sc.hour(T0, shift=2.0)
    sc.hour(T0 + timedelta(hours=1), shift=2.0)
    sc.hour(T0 + timedelta(hours=2))
    now = T0 + timedelta(hours=1)
    service.stop()
    try:
        first = agent(sc)
        first.run_system(first.cfg.systems[0].id, now)
        stats = first.outbox.deliver_due(now)
        assert stats.retried >= 1 and stats.delivered >= 1, "the local folder got it; the tool did not"
        pending = [m for m in outbox(first, "tool") if m.status == "pending"]
        assert pending and all(m.last_error for m in pending)
        assert 'aims_outbox_pending{sink="tool"}' in metrics(first)
        # a second attempt while still down: retried again, never given up
        later = now + timedelta(hours=1)
        first.outbox.deliver_due(later)
        first.close()
    finally:
        service.start()

    # a new agent on the same state store, with messages pending, delivers them once the tool is back
    second = agent(sc)
    second.deliver(now + timedelta(days=1))
    assert {m.status for m in outbox(second, "tool")} == {"delivered"}
    fp = next(i.fingerprint for i in incidents(second) if i.kind == "prediction_drift")
    assert len(remote(fp)) == 1, "one ticket, not one per attempt"
    assert 'aims_outbox_pending{sink="tool"}' not in metrics(second)
    assert 'aims_notifications_delivered_total{sink="tool"}' in metrics(second)

    # the tool goes down again before the recovery is reported; nothing is lost then either
    service.stop()
    try:
        second.run_system(second.cfg.systems[0].id, T0 + timedelta(hours=3))
        second.outbox.deliver_due(T0 + timedelta(days=2))
        assert any(m.status == "pending" and m.action == "resolve" for m in outbox(second, "tool"))
    finally:
        service.start()
    second.deliver(T0 + timedelta(days=3))
    assert {m.status for m in outbox(second, "tool")} == {"delivered"}
    after = remote(fp)
    if tool == "alertmanager":
        assert after == [], "resolved alerts leave the active list"
    else:
        assert len(after) == 1
        status = after[0]["status"]["name"] if tool == "redmine" else after[0]["Status"]
        assert status in ("Closed", "resolved")
    second.close()
