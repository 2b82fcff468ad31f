"""When the local map from fingerprint to ticket is lost (state store restored, agent moved), Redmine
and Request Tracker still find the open ticket by the fingerprint in their custom field: updates land
on it as notes/comments and resolve closes it; no second ticket is made."""

from __future__ import annotations

import httpx
import pytest

from connectors.sinks.redmine import RedmineSink, RedmineSinkConfig
from connectors.sinks.rt import RequestTrackerSink, RequestTrackerSinkConfig
from tests.sinks.agent_rig import redmine_issues, rt_tickets
from tests.sinks.conftest import NoticeFactory, RealService, redmine_sink_config, rt_sink_config


@pytest.mark.integration
def test_redmine_finds_the_open_issue_without_the_local_map(redmine: RealService, redmine_project: str,
                                                             make_notice: NoticeFactory) -> None:
    cfg = RedmineSinkConfig.model_validate(redmine_sink_config(redmine, redmine_project))
    opened = make_notice("open", severity="medium")
    ref = RedmineSink(cfg).deliver(opened, known=None)
    # a different process, no known ticket
    amnesiac = RedmineSink(cfg)
    assert amnesiac.deliver(make_notice("update", severity="critical"), known=None) == ref
    assert amnesiac.deliver(make_notice("resolve", severity="critical"), known=None) == ref
    (issue,) = redmine_issues(redmine, redmine_project, opened.fingerprint)
    assert issue["status"]["name"] == "Closed"
    full = httpx.get(f"{redmine.url}/issues/{ref.remote_id}.json", params={"include": "journals"},
                     headers={"X-Redmine-API-Key": redmine.secret}).json()["issue"]
    notes = [j["notes"] for j in full["journals"] if j.get("notes")]
    assert len(notes) == 2 and "update:" in notes[0] and "resolve:" in notes[1]
    assert full["priority"]["id"] == 5, "the priority followed the severity to critical"


@pytest.mark.integration
def test_rt_finds_the_active_ticket_without_the_local_map(rt: RealService, make_notice: NoticeFactory) -> None:
    cfg = RequestTrackerSinkConfig.model_validate(rt_sink_config(rt))
    opened = make_notice("open")
    ref = RequestTrackerSink(cfg).deliver(opened, known=None)
    amnesiac = RequestTrackerSink(cfg)
    assert amnesiac.deliver(make_notice("update"), known=None) == ref
    assert amnesiac.deliver(make_notice("resolve"), known=None) == ref
    (ticket,) = rt_tickets(rt, opened.fingerprint)
    assert ticket["Status"] == "resolved"
    history = httpx.get(f"{rt.url}/REST/2.0/ticket/{ref.remote_id}/history",
                        headers={"Authorization": f"token {rt.secret}"}, params={"fields": "Type"}).json()
    assert sum(1 for t in history["items"] if t.get("Type") == "Comment") == 2
