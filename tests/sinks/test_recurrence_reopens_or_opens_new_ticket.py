"""A recurrence (the same fingerprint breaching again after it resolved) opens a new ticket by default,
or reopens the last one when the sink says ``on_recurrence: reopen``."""

from __future__ import annotations

import pytest

from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.redmine import RedmineSink, RedmineSinkConfig
from tests.fakes.github import FakeGitHub
from tests.sinks.agent_rig import redmine_issues
from tests.sinks.conftest import LOOPBACK, NoticeFactory, RealService, redmine_sink_config


@pytest.mark.integration
@pytest.mark.parametrize(("mode", "issues"), [("new", 2), ("reopen", 1)])
def test_redmine_recurrence(mode: str, issues: int, redmine: RealService, redmine_project: str,
                            make_notice: NoticeFactory) -> None:
    sink = RedmineSink(RedmineSinkConfig.model_validate(
        redmine_sink_config(redmine, redmine_project, on_recurrence=mode)))
    first = sink.deliver(make_notice("open", incident_id=1), known=None)
    first = sink.deliver(make_notice("resolve", incident_id=1), known=first)
    second = sink.deliver(make_notice("open", incident_id=2), known=first)
    found = redmine_issues(redmine, redmine_project, make_notice().fingerprint)
    assert len(found) == issues
    assert (second == first) is (mode == "reopen")
    assert {i["status"]["name"] for i in found if str(i["id"]) == second.remote_id} == {"New"}


@pytest.mark.parametrize(("mode", "issues"), [("new", 2), ("reopen", 1)])
def test_github_recurrence(mode: str, issues: int, make_notice: NoticeFactory) -> None:
    gh = FakeGitHub(token="t0ken", repo="acme/models").start()
    try:
        sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "t0ken", "repository": "acme/models",
                                                           "allowed_hosts": LOOPBACK, "on_recurrence": mode}))
        ref = sink.deliver(make_notice("open", incident_id=1), known=None)
        ref = sink.deliver(make_notice("resolve", incident_id=1), known=ref)
        again = sink.deliver(make_notice("open", incident_id=2), known=ref)
        assert len(gh.issues) == issues
        assert gh.issues[int(again.remote_id)]["state"] == "open"
        if mode == "reopen":
            assert gh.issues[1]["state_reason"] == "reopened"
        else:
            assert gh.issues[1]["state_reason"] == "completed"
    finally:
        gh.stop()
