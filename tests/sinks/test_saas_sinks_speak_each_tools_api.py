"""Each SaaS sink against a local fake that follows the tool's documented contract: paths, auth headers,
bodies, status codes, error bodies, rate limiting (429 + Retry-After) and Jira's eventually consistent
search. Failures map to retryable or permanent errors that never carry the credentials."""

from __future__ import annotations

from typing import Any

import pytest

from config.errors import PermanentSinkError, RetryableSinkError
from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.jira import JiraSink, JiraSinkConfig
from connectors.sinks.opsgenie import OpsgenieSink, OpsgenieSinkConfig
from connectors.sinks.pagerduty import PagerDutySink, PagerDutySinkConfig
from connectors.sinks.servicenow import ServiceNowSink, ServiceNowSinkConfig
from connectors.sinks.slack import SlackSink, SlackSinkConfig
from tests.fakes.github import FakeGitHub
from tests.fakes.http_server import FakeService, Reply
from tests.fakes.jira import FakeJira
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.slack import FakeSlack
from tests.sinks.conftest import LOOPBACK, NoticeFactory, up

PD_KEY = "R0UT1NGKEY0123456789abcdef012345"


# -- Jira --------------------------------------------------------------------------------------------
def _jira(fakes: list[FakeService], **cfg: Any) -> tuple[FakeJira, JiraSink]:
    jira = up(fakes, FakeJira(email="bot@example.com", token="jira-secret-token", search_lag=5))
    sink = JiraSink(JiraSinkConfig.model_validate({
        "url": jira.url, "email": "bot@example.com", "api_token": "jira-secret-token", "project_key": "MM",
        "allowed_hosts": LOOPBACK, "priorities": {"critical": "Highest", "high": "High"}, **cfg}))
    return jira, sink


def test_jira_issue_carries_adf_and_a_fingerprint_label_and_resolves_by_transition_name(
        fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    jira, sink = _jira(fakes)
    opened = make_notice("open")
    ref = sink.deliver(opened, known=None)
    issue = jira.issues[ref.remote_id]
    assert issue["fields"]["description"]["type"] == "doc"
    assert {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "What happened"}]} in (
        issue["fields"]["description"]["content"])
    assert f"aiinc-{opened.fingerprint}" in issue["fields"]["labels"]
    assert issue["fields"]["priority"] == {"name": "High"}
    assert ref.url == f"{jira.url}/browse/{ref.remote_id}"
    searches = jira.calls("GET", "/rest/api/3/search")
    assert searches and all(r.path == "/rest/api/3/search/jql" for r in searches), "the removed /search is unused"

    sink.deliver(make_notice("update", severity="critical"), known=ref)
    assert issue["fields"]["priority"] == {"name": "Highest"}
    sink.deliver(make_notice("resolve"), known=ref)
    assert issue["fields"]["status"]["name"] == "Done"
    posted = [r.json() for r in jira.calls("POST", f"/rest/api/3/issue/{ref.remote_id}/transitions")]
    assert posted == [{"transition": {"id": "41"}}], "the transition id was looked up by name"
    assert len(jira.comments[ref.remote_id]) == 2


def test_jira_eventually_consistent_search_does_not_duplicate_within_a_process(
        fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    jira, sink = _jira(fakes)
    ref = sink.deliver(make_notice("open"), known=None)
    # the search index has not seen the new issue yet; an update without the local map must still find it
    assert sink.deliver(make_notice("update"), known=None) == ref
    assert len(jira.issues) == 1


def test_jira_unknown_transition_is_permanent_and_names_the_choices(fakes: list[FakeService],
                                                                    make_notice: NoticeFactory) -> None:
    _, sink = _jira(fakes, resolve_transition="Close Issue")
    ref = sink.deliver(make_notice("open"), known=None)
    with pytest.raises(PermanentSinkError, match=r"no transition 'Close Issue'.*Done"):
        sink.deliver(make_notice("resolve"), known=ref)


def test_jira_bad_credentials_are_permanent_and_not_echoed(fakes: list[FakeService],
                                                           make_notice: NoticeFactory) -> None:
    jira = up(fakes, FakeJira(email="bot@example.com", token="right-token"))
    sink = JiraSink(JiraSinkConfig.model_validate({
        "url": jira.url, "email": "bot@example.com", "api_token": "wrong-token-123", "project_key": "MM",
        "allowed_hosts": LOOPBACK}))
    with pytest.raises(PermanentSinkError) as err:
        sink.deliver(make_notice("open"), known=None)
    assert "401" in str(err.value) and "not authenticated" in str(err.value)
    assert "wrong-token-123" not in str(err.value)


# -- ServiceNow --------------------------------------------------------------------------------------
def test_servicenow_uses_correlation_id_work_notes_and_resolves_with_close_code(
        fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    sn = up(fakes, FakeServiceNow(username="aims", password="sn-secret"))
    sink = ServiceNowSink(ServiceNowSinkConfig.model_validate({
        "url": sn.url, "username": "aims", "password": "sn-secret", "allowed_hosts": LOOPBACK,
        "assignment_group": "ML Platform", "close_code": "Resolved by change"}))
    opened = make_notice("open", severity="critical")
    ref = sink.deliver(opened, known=None)
    rec = sn.records[ref.remote_id]
    assert rec["correlation_id"] == opened.fingerprint and rec["correlation_display"] == "aims-agent"
    assert (rec["urgency"], rec["impact"], rec["assignment_group"]) == ("1", "1", "ML Platform")
    sink.deliver(make_notice("update", severity="low"), known=None)  # found again by correlation_id
    assert rec["urgency"] == "3" and len(rec["work_notes_list"]) == 1
    sink.deliver(make_notice("resolve"), known=ref)
    assert (rec["state"], rec["close_code"]) == ("6", "Resolved by change")
    assert sn.open_records() == []


def test_servicenow_data_policy_rejection_is_permanent_with_its_reason(fakes: list[FakeService],
                                                                       make_notice: NoticeFactory) -> None:
    sn = up(fakes, FakeServiceNow(username="aims", password="sn-secret"))
    sink = ServiceNowSink(ServiceNowSinkConfig.model_validate({
        "url": sn.url, "username": "aims", "password": "sn-secret", "allowed_hosts": LOOPBACK, "close_code": ""}))
    ref = sink.deliver(make_notice("open"), known=None)
    with pytest.raises(PermanentSinkError, match="Operation Failed") as err:
        sink.deliver(make_notice("resolve"), known=ref)
    assert "sn-secret" not in str(err.value)


# -- PagerDuty ---------------------------------------------------------------------------------------
def test_pagerduty_triggers_acknowledges_and_resolves_one_alert(fakes: list[FakeService],
                                                                make_notice: NoticeFactory) -> None:
    pd = up(fakes, FakePagerDuty(routing_key=PD_KEY))
    sink = PagerDutySink(PagerDutySinkConfig.model_validate({"url": pd.url, "routing_key": PD_KEY,
                                                             "allowed_hosts": LOOPBACK}))
    opened = make_notice("open", severity="high")
    sink.deliver(opened, known=None)
    sink.deliver(make_notice("update", severity="critical"), known=None)
    assert pd.alerts[opened.fingerprint]["payload"]["severity"] == "critical"
    assert pd.alerts[opened.fingerprint]["triggers"] == 2
    sink.deliver(make_notice("update", status="acknowledged"), known=None)
    assert pd.alerts[opened.fingerprint]["status"] == "acknowledged"
    sink.deliver(make_notice("resolve"), known=None)
    assert pd.alerts[opened.fingerprint] | {"incidents": 1} == pd.alerts[opened.fingerprint]
    assert pd.alerts[opened.fingerprint]["status"] == "resolved"
    actions = [r.json()["event_action"] for r in pd.calls("POST", "/v2/enqueue")]
    assert actions == ["trigger", "trigger", "acknowledge", "resolve"]
    assert all("authorization" not in r.headers for r in pd.requests), "the routing key goes in the body"
    first = pd.requests[0].json()
    assert first["payload"]["severity"] == "error" and first["dedup_key"] == opened.fingerprint


def test_pagerduty_rate_limit_is_retried_after_the_servers_delay(fakes: list[FakeService],
                                                                 make_notice: NoticeFactory) -> None:
    pd = up(fakes, FakePagerDuty(routing_key=PD_KEY))
    sink = PagerDutySink(PagerDutySinkConfig.model_validate({"url": pd.url, "routing_key": PD_KEY,
                                                             "allowed_hosts": LOOPBACK}))
    pd.fail_next(Reply(429, {"status": "throttle event", "message": "Requests for this service are arriving "
                                                                     "too quickly."}, {"Retry-After": "30"}))
    with pytest.raises(RetryableSinkError) as err:
        sink.deliver(make_notice("open"), known=None)
    assert err.value.retry_after == 30.0
    assert PD_KEY not in str(err.value)
    sink.deliver(make_notice("open", message_id=77), known=None)
    assert len(pd.alerts) == 1


def test_pagerduty_invalid_event_is_permanent(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    pd = up(fakes, FakePagerDuty(routing_key=PD_KEY))
    sink = PagerDutySink(PagerDutySinkConfig.model_validate({"url": pd.url, "routing_key": "short",
                                                             "allowed_hosts": LOOPBACK}))
    with pytest.raises(PermanentSinkError, match="routing_key"):
        sink.deliver(make_notice("open"), known=None)


# -- Opsgenie ----------------------------------------------------------------------------------------
def test_opsgenie_alias_notes_priority_and_close(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    og = up(fakes, FakeOpsgenie(api_key="genie-secret"))
    sink = OpsgenieSink(OpsgenieSinkConfig.model_validate({
        "url": og.url, "api_key": "genie-secret", "allowed_hosts": LOOPBACK,
        "responders": [{"type": "team", "name": "ML Platform"}]}))
    opened = make_notice("open", severity="medium")
    sink.deliver(opened, known=None)
    (alert,) = og.alerts
    assert (alert["alias"], alert["priority"], alert["responders"]) == (
        opened.fingerprint, "P3", [{"type": "team", "name": "ML Platform"}])
    sink.deliver(make_notice("update", severity="critical"), known=None)
    assert alert["priority"] == "P1" and len(alert["notes"]) == 1
    sink.deliver(make_notice("update", status="acknowledged"), known=None)
    assert alert["acknowledged"]
    sink.deliver(make_notice("resolve"), known=None)
    assert alert["status"] == "closed"
    assert all(r.arg("identifierType") == "alias" for r in og.requests[1:])
    assert all(r.headers["authorization"] == "GenieKey genie-secret" for r in og.requests)


def test_opsgenie_rejects_a_bad_key_permanently(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    og = up(fakes, FakeOpsgenie(api_key="genie-secret"))
    sink = OpsgenieSink(OpsgenieSinkConfig.model_validate({"url": og.url, "api_key": "wrong-genie",
                                                           "allowed_hosts": LOOPBACK}))
    with pytest.raises(PermanentSinkError, match="Could not authenticate") as err:
        sink.deliver(make_notice("open"), known=None)
    assert "wrong-genie" not in str(err.value)


# -- GitHub ------------------------------------------------------------------------------------------
def test_github_issue_label_comment_and_close_completed(fakes: list[FakeService],
                                                         make_notice: NoticeFactory) -> None:
    gh = up(fakes, FakeGitHub(token="ghp-secret", repo="acme/models"))
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "ghp-secret",
                                                       "repository": "acme/models", "allowed_hosts": LOOPBACK}))
    opened = make_notice("open")
    # a pull request with the same labels must not be taken for the incident's issue
    gh.add_pull_request(["ai-incident", f"aiinc-{opened.fingerprint}"])
    ref = sink.deliver(opened, known=None)
    issue = gh.issues[int(ref.remote_id)]
    assert "pull_request" not in issue
    assert f"<!-- aims-fingerprint: {opened.fingerprint} -->" in issue["body"]
    sink.deliver(make_notice("update"), known=None)
    sink.deliver(make_notice("resolve"), known=None)
    assert (issue["state"], issue["state_reason"]) == ("closed", "completed")
    assert len(gh.comments[int(ref.remote_id)]) == 2
    assert all(r.headers["accept"] == "application/vnd.github+json" for r in gh.requests)


def test_github_rate_limit_403_is_retryable(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    gh = up(fakes, FakeGitHub(token="ghp-secret", repo="acme/models"))
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "ghp-secret",
                                                       "repository": "acme/models", "allowed_hosts": LOOPBACK}))
    gh.fail_next(Reply(403, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": "60"}))
    with pytest.raises(RetryableSinkError, match="secondary rate limit") as err:
        sink.deliver(make_notice("open"), known=None)
    assert err.value.retry_after == 60.0


# -- Slack -------------------------------------------------------------------------------------------
def test_slack_posts_blocks_with_a_text_fallback_once_per_message(fakes: list[FakeService],
                                                                  make_notice: NoticeFactory) -> None:
    slack = up(fakes, FakeSlack())
    sink = SlackSink(SlackSinkConfig.model_validate({"webhook_url": slack.webhook_url,
                                                     "allowed_hosts": LOOPBACK}))
    notice = make_notice("open")
    sink.deliver(notice, known=None)
    sink.deliver(notice, known=None)
    (msg,) = slack.messages
    assert msg["text"].startswith(":rotating_light: Opened [HIGH]")
    assert msg["blocks"][0]["type"] == "header"
    assert "What to check first" in str(msg["blocks"])


def test_slack_errors_never_reveal_the_webhook_url(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    slack = up(fakes, FakeSlack())
    sink = SlackSink(SlackSinkConfig.model_validate({"webhook_url": slack.webhook_url,
                                                     "allowed_hosts": LOOPBACK}))
    slack.fail_next(Reply(404, text="no_service"))
    with pytest.raises(PermanentSinkError, match="no_service") as err:
        sink.deliver(make_notice("open"), known=None)
    assert slack.path not in str(err.value)
    slack.fail_next(Reply(429, text="rate_limited", headers={"Retry-After": "2"}))
    with pytest.raises(RetryableSinkError) as retry:
        sink.deliver(make_notice("open"), known=None)
    assert retry.value.retry_after == 2.0
    assert slack.path not in str(retry.value)
