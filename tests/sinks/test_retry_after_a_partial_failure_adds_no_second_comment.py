"""Operations that comment and then change the ticket (priority, transition, close) are retried after the
second request fails (429, 5xx) and redelivered after a crash: the comment is posted once, because each
tool is asked whether the ticket already carries the message's marker; the state change is made once.
The marker of message 1 does not match message 12."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from config.errors import RetryableSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.jira import JiraSink, JiraSinkConfig
from connectors.sinks.opsgenie import OpsgenieSink, OpsgenieSinkConfig
from connectors.sinks.rt import RequestTrackerSink, RequestTrackerSinkConfig
from connectors.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from tests.fakes.github import FakeGitHub
from tests.fakes.http_server import FakeService, Reply, Request
from tests.fakes.jira import FakeJira
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.servicenow import FakeServiceNow
from tests.sinks.conftest import LOOPBACK, NoticeFactory, RealService, rt_sink_config, up

THROTTLED = Reply(429, {"message": "slow down"}, {"Retry-After": "1"})
DOWN = Reply(503, {"message": "unavailable"})


def _fails_once_then_succeeds(sink: Any, fake: FakeService, notice: Notice, known: TicketRef | None,
                              reply: Reply, when: Callable[[Request], bool]) -> TicketRef:
    fake.outage(reply, when)
    with pytest.raises(RetryableSinkError):
        sink.deliver(notice, known=known)
    fake.recover()
    return sink.deliver(notice, known=known)  # the outbox's retry of the same message


def _jira(fakes: list[FakeService]) -> tuple[FakeJira, JiraSink]:
    jira = up(fakes, FakeJira(email="bot@example.com", token="tok"))
    return jira, JiraSink(JiraSinkConfig.model_validate({
        "url": jira.url, "email": "bot@example.com", "api_token": "tok", "project_key": "MM",
        "allowed_hosts": LOOPBACK, "priorities": {"critical": "Highest", "high": "High"}}))


def test_jira_update_whose_priority_change_was_throttled(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    jira, sink = _jira(fakes)
    ref = sink.deliver(make_notice("open"), known=None)
    _fails_once_then_succeeds(sink, jira, make_notice("update", severity="critical"), ref, THROTTLED,
                              lambda r: r.method == "PUT")
    assert len(jira.comments[ref.remote_id]) == 1
    assert jira.issues[ref.remote_id]["fields"]["priority"] == {"name": "Highest"}


def test_jira_resolve_whose_transition_failed(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    jira, sink = _jira(fakes)
    ref = sink.deliver(make_notice("open"), known=None)
    _fails_once_then_succeeds(sink, jira, make_notice("resolve"), ref, DOWN,
                              lambda r: r.method == "POST" and r.path.endswith("/transitions"))
    assert len(jira.comments[ref.remote_id]) == 1
    assert jira.issues[ref.remote_id]["fields"]["status"]["name"] == "Done"
    # delivered again after a crash: the issue is done already, so no transition (none would exist)
    again = make_notice("resolve", message_id=99)
    JiraSink(sink.config).deliver(again, known=ref)
    transitions = [r for r in jira.calls("POST", f"/rest/api/3/issue/{ref.remote_id}/transitions")
                   if r.json()["transition"]["id"] == "41"]
    assert len(transitions) == 2, "one failed, one applied; none for the issue already done"


def test_github_close_whose_state_change_failed(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    gh = up(fakes, FakeGitHub(token="tok", repo="acme/models"))
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "tok", "repository": "acme/models",
                                                       "allowed_hosts": LOOPBACK}))
    ref = sink.deliver(make_notice("open"), known=None)
    _fails_once_then_succeeds(sink, gh, make_notice("resolve"), ref, DOWN, lambda r: r.method == "PATCH")
    issue = gh.issues[int(ref.remote_id)]
    assert len(gh.comments[int(ref.remote_id)]) == 1
    assert (issue["state"], issue["state_reason"]) == ("closed", "completed")


def test_opsgenie_note_whose_priority_change_was_throttled(fakes: list[FakeService],
                                                          make_notice: NoticeFactory) -> None:
    og = up(fakes, FakeOpsgenie(api_key="genie"))
    cfg = OpsgenieSinkConfig.model_validate({"url": og.url, "api_key": "genie", "allowed_hosts": LOOPBACK})
    sink = OpsgenieSink(cfg)
    opened = make_notice("open", severity="medium")
    sink.deliver(opened, known=None)
    update = make_notice("update", severity="critical")
    _fails_once_then_succeeds(sink, og, update, None, THROTTLED, lambda r: r.method == "PUT")
    OpsgenieSink(cfg).deliver(update, known=None)  # redelivered by a new process after a crash
    alert = og.open_alert(opened.fingerprint)
    assert alert is not None and len(alert["notes"]) == 1 and alert["priority"] == "P1"
    resolve = make_notice("resolve")
    sink.deliver(resolve, known=None)
    OpsgenieSink(cfg).deliver(resolve, known=None)
    assert alert["status"] == "closed" and len(alert["notes"]) == 2, "the close note once"


def test_servicenow_work_note_whose_urgency_change_failed(fakes: list[FakeService],
                                                         make_notice: NoticeFactory) -> None:
    sn = up(fakes, FakeServiceNow(username="aims", password="pw"))
    cfg = ServiceNowSinkConfig.model_validate({"url": sn.url, "username": "aims", "password": "pw",
                                               "allowed_hosts": LOOPBACK})
    sink = ServiceNowSink(cfg)
    ref = sink.deliver(make_notice("open"), known=None)
    update = make_notice("update", severity="critical")
    _fails_once_then_succeeds(sink, sn, update, ref, DOWN,
                              lambda r: r.method == "PATCH" and "urgency" in r.json())
    ServiceNowSink(cfg).deliver(update, known=ref)  # redelivered by a new process after a crash
    rec = sn.records[ref.remote_id]
    assert len(rec["work_notes_list"]) == 1 and rec["urgency"] == "1"
    resolve = make_notice("resolve")
    _fails_once_then_succeeds(ServiceNowSink(cfg), sn, resolve, ref, DOWN,
                              lambda r: r.method == "PATCH" and "state" in r.json())
    assert rec["state"] == "6" and len(rec["work_notes_list"]) == 2


@pytest.mark.integration
def test_rt_comment_whose_priority_change_failed(rt: RealService, make_notice: NoticeFactory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RequestTrackerSinkConfig.model_validate(rt_sink_config(rt))
    sink = RequestTrackerSink(cfg)
    ref = sink.deliver(make_notice("open"), known=None)
    real = sink.http.request
    failures = iter([True])

    def flaky(method: str, path: str, **kw: Any) -> httpx.Response:
        if method == "PUT" and next(failures, False):
            raise RetryableSinkError(f"{method} rt{path}: HTTP 503")
        return real(method, path, **kw)

    monkeypatch.setattr(sink.http, "request", flaky)
    update = make_notice("update", severity="critical")
    with pytest.raises(RetryableSinkError):
        sink.deliver(update, known=ref)
    sink.deliver(update, known=ref)
    RequestTrackerSink(cfg).deliver(update, known=ref)  # redelivered by a new process after a crash
    headers = {"Authorization": f"token {rt.secret}"}
    history = httpx.get(f"{rt.url}/REST/2.0/ticket/{ref.remote_id}/history", headers=headers,
                        params={"fields": "Type", "per_page": 100}, timeout=30).json()["items"]
    assert sum(1 for t in history if t["Type"] == "Comment") == 1
    ticket = httpx.get(f"{rt.url}/REST/2.0/ticket/{ref.remote_id}", headers=headers, timeout=30).json()
    assert int(ticket["Priority"]) == 90


def test_the_marker_of_message_1_does_not_match_message_12(fakes: list[FakeService],
                                                           make_notice: NoticeFactory) -> None:
    gh = up(fakes, FakeGitHub(token="tok", repo="acme/models"))
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "tok", "repository": "acme/models",
                                                       "allowed_hosts": LOOPBACK}))
    ref = sink.deliver(make_notice("open"), known=None)
    twelve = make_notice("update", message_id=12)
    sink.deliver(twelve, known=ref)
    sink.deliver(dataclasses.replace(twelve, message_id=1), known=ref)  # same action, same moment
    assert len(gh.comments[int(ref.remote_id)]) == 2
