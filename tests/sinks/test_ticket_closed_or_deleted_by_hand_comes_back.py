"""A person closes or deletes the ticket of an incident the agent still sees open. The next change does
not die on a 404 nor vanish into a closed ticket: a deleted ticket is replaced by a new one, a closed
one is reopened (``on_recurrence: reopen``) or replaced (``new``), the ticket says why, and the agent
records ``ticket_reinstated`` evidence and maps the fingerprint to the ticket that now carries it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agent.schema import SinkTicket
from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.opsgenie import OpsgenieSink, OpsgenieSinkConfig
from connectors.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from tests.conftest import T0, Scenario
from tests.fakes.github import FakeGitHub
from tests.fakes.http_server import FakeService
from tests.fakes.jira import FakeJira
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.servicenow import FakeServiceNow
from tests.sinks.agent_rig import agent, evidence, incidents, outbox, route
from tests.sinks.conftest import LOOPBACK, NoticeFactory, up


def _jira_agent(sc: Scenario, jira: FakeJira, **extra: Any) -> Any:
    route(sc, {"jira": {"type": "jira", "url": jira.url, "email": "bot@example.com", "api_token": "tok",
                        "project_key": "MM", "allowed_hosts": LOOPBACK, **extra}})
    for h, shift in enumerate([2.0, 2.0, 3.0, 0.0, 0.0]):  # data quality: open, update (hour 3), resolve
        sc.hour(T0 + timedelta(hours=h), shift=shift)
    a = agent(sc)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    return a


def _ticket_of(a: Any, fingerprint: str) -> str:
    with a.store.session() as s:
        row = s.get(SinkTicket, ("jira", fingerprint))
        return str(row.remote_id) if row else ""


def test_jira_issue_deleted_by_hand_is_replaced_and_recorded(scenario: Scenario, fakes: list[FakeService]) -> None:
    jira = up(fakes, FakeJira(email="bot@example.com", token="tok", search_lag=0))
    a = _jira_agent(scenario, jira)
    inc = next(i for i in incidents(a) if i.kind == "data_quality")
    old = _ticket_of(a, inc.fingerprint)
    jira.delete_issue(old)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=3))  # severity rises: an update
    a.deliver(T0 + timedelta(hours=3))
    assert {m.status for m in outbox(a, "jira")} == {"delivered"}, "no permanent 404, nothing dead"
    new = _ticket_of(a, inc.fingerprint)
    assert new != old and new in jira.issues
    (note,) = jira.comments[new]
    assert f"Ticket {old} was deleted in the tool while the incident is still open" in str(note)
    (record,) = evidence(a, "ticket_reinstated")
    assert (record["previous_remote_id"], record["previous_state"], record["how"], record["remote_id"]) == (
        old, "gone", "new", new)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=4))
    a.deliver(T0 + timedelta(hours=4))
    assert jira.issues[new]["fields"]["status"]["name"] == "Done", "the resolve closes the new issue"
    a.close()


@pytest.mark.parametrize(("on_recurrence", "how"), [("new", "new"), ("reopen", "reopened")])
def test_jira_issue_closed_by_hand_comes_back(on_recurrence: str, how: str, scenario: Scenario,
                                              fakes: list[FakeService]) -> None:
    jira = up(fakes, FakeJira(email="bot@example.com", token="tok", search_lag=0))
    a = _jira_agent(scenario, jira, on_recurrence=on_recurrence)
    inc = next(i for i in incidents(a) if i.kind == "data_quality")
    old = _ticket_of(a, inc.fingerprint)
    jira.close_by_hand(old)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=3))
    a.deliver(T0 + timedelta(hours=3))
    now = _ticket_of(a, inc.fingerprint)
    assert (now == old) == (how == "reopened")
    assert jira.issues[now]["fields"]["status"]["statusCategory"]["key"] != "done"
    assert f"Ticket {old} was closed in the tool" in str(jira.comments[now][-1])
    assert [(r["previous_state"], r["how"]) for r in evidence(a, "ticket_reinstated")] == [("closed", how)]
    a.close()


def test_jira_resolve_of_a_deleted_issue_is_not_an_error(scenario: Scenario, fakes: list[FakeService]) -> None:
    jira = up(fakes, FakeJira(email="bot@example.com", token="tok", search_lag=0))
    a = _jira_agent(scenario, jira)
    for key in list(jira.issues):
        jira.delete_issue(key)
    for h in (2, 3, 4):
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=h))
    a.deliver(T0 + timedelta(hours=4))
    assert {m.status for m in outbox(a, "jira")} == {"delivered"}
    assert jira.open_issues() == [], "the update made a new issue, the resolve closed it"
    a.close()


def test_github_issue_deleted_by_hand_410_is_replaced(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    gh = up(fakes, FakeGitHub(token="tok", repo="acme/models"))
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "tok", "repository": "acme/models",
                                                       "allowed_hosts": LOOPBACK}))
    ref = sink.deliver(make_notice("open"), known=None)
    gh.delete_issue(int(ref.remote_id))
    update = make_notice("update")
    new = sink.deliver(update, known=ref)
    assert new.remote_id != ref.remote_id and new.reinstated is not None
    assert (new.reinstated.previous_state, new.reinstated.how) == ("gone", "new")
    assert GitHubSink(sink.config).deliver(update, known=ref).remote_id == new.remote_id, \
        "redelivered after a crash: the replacement is found, not made twice"
    assert len(gh.issues) == 1 and len(gh.comments[int(new.remote_id)]) == 1


def test_servicenow_record_deleted_or_closed_by_hand_is_replaced(fakes: list[FakeService],
                                                                  make_notice: NoticeFactory) -> None:
    sn = up(fakes, FakeServiceNow(username="aims", password="pw"))
    sink = ServiceNowSink(ServiceNowSinkConfig.model_validate({"url": sn.url, "username": "aims", "password": "pw",
                                                               "allowed_hosts": LOOPBACK}))
    ref = sink.deliver(make_notice("open"), known=None)
    sn.delete_record(ref.remote_id)
    second = sink.deliver(make_notice("update"), known=ref)
    assert second.remote_id != ref.remote_id and second.remote_id in sn.records
    sn.close_by_hand(second.remote_id)
    third = sink.deliver(make_notice("update"), known=second)
    assert third.reinstated is not None and third.reinstated.previous_state == "closed"
    assert [r["state"] for r in sn.open_records()] == ["1"]


def test_opsgenie_alert_closed_by_hand_is_raised_again(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    og = up(fakes, FakeOpsgenie(api_key="genie"))
    sink = OpsgenieSink(OpsgenieSinkConfig.model_validate({"url": og.url, "api_key": "genie",
                                                           "allowed_hosts": LOOPBACK}))
    opened = make_notice("open")
    sink.deliver(opened, known=None)
    og.close_by_hand(opened.fingerprint)
    ref = sink.deliver(make_notice("update"), known=None)
    assert ref.reinstated is not None and ref.reinstated.previous_state == "closed"
    alert = og.open_alert(opened.fingerprint)
    assert alert is not None and len(alert["notes"]) == 1, "a new open alert carries the update"
