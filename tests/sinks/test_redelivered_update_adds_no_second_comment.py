"""An update delivered again by a new process (the agent crashed after the tool accepted it, before the
outbox recorded it) finds its own comment by the message marker and adds none."""

from __future__ import annotations

import httpx
import pytest

from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.jira import JiraSink, JiraSinkConfig
from connectors.sinks.redmine import RedmineSink, RedmineSinkConfig
from tests.fakes.github import FakeGitHub
from tests.fakes.jira import FakeJira
from tests.sinks.conftest import LOOPBACK, NoticeFactory, RealService, redmine_sink_config


@pytest.mark.integration
def test_redmine_redelivered_update_adds_no_second_note(redmine: RealService, redmine_project: str,
                                                        make_notice: NoticeFactory) -> None:
    cfg = RedmineSinkConfig.model_validate(redmine_sink_config(redmine, redmine_project))
    ref = RedmineSink(cfg).deliver(make_notice("open"), known=None)
    update = make_notice("update")
    RedmineSink(cfg).deliver(update, known=ref)
    RedmineSink(cfg).deliver(update, known=ref)  # after a restart: a new sink, no memory of the first
    journals = httpx.get(f"{redmine.url}/issues/{ref.remote_id}.json", params={"include": "journals"},
                         headers={"X-Redmine-API-Key": redmine.secret}).json()["issue"]["journals"]
    assert sum(1 for j in journals if j.get("notes")) == 1
    RedmineSink(cfg).deliver(make_notice("update"), known=ref)  # a different message does add one
    journals = httpx.get(f"{redmine.url}/issues/{ref.remote_id}.json", params={"include": "journals"},
                         headers={"X-Redmine-API-Key": redmine.secret}).json()["issue"]["journals"]
    assert sum(1 for j in journals if j.get("notes")) == 2


def test_jira_and_github_redelivered_update_adds_no_second_comment(make_notice: NoticeFactory) -> None:
    jira = FakeJira(email="bot@example.com", token="tok").start()
    gh = FakeGitHub(token="tok", repo="acme/models").start()
    try:
        jira_cfg = JiraSinkConfig.model_validate({"url": jira.url, "email": "bot@example.com", "api_token": "tok",
                                                  "project_key": "MM", "allowed_hosts": LOOPBACK})
        gh_cfg = GitHubSinkConfig.model_validate({"url": gh.url, "token": "tok", "repository": "acme/models",
                                                  "allowed_hosts": LOOPBACK})
        update = make_notice("update")
        jref = JiraSink(jira_cfg).deliver(make_notice("open"), known=None)
        gref = GitHubSink(gh_cfg).deliver(make_notice("open"), known=None)
        for _ in range(2):
            JiraSink(jira_cfg).deliver(update, known=jref)
            GitHubSink(gh_cfg).deliver(update, known=gref)
        assert len(jira.comments[jref.remote_id]) == 1
        assert len(gh.comments[int(gref.remote_id)]) == 1
    finally:
        jira.stop()
        gh.stop()
