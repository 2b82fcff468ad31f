"""The SaaS fakes enforce the rate limits their tools document, on their own (not only when a test
injects a fault): Jira, ServiceNow and Slack answer 429 with ``Retry-After``, PagerDuty and Opsgenie 429
without it, GitHub 403 for both its primary and its secondary limit. The outbox's next attempt waits for
the server's ``Retry-After``; a permanent 4xx is dead at once with a ``notification_failed`` record; and
a tool answering 5xx and 429 for six simulated hours loses nothing and duplicates nothing once it is back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from config.errors import RetryableSinkError
from connectors.sinks.github import GitHubSink, GitHubSinkConfig
from connectors.sinks.pagerduty import PagerDutySink, PagerDutySinkConfig
from tests.conftest import T0, Scenario
from tests.fakes.github import FakeGitHub
from tests.fakes.http_server import FakeService, Reply, Request
from tests.fakes.jira import FakeJira
from tests.fakes.opsgenie import FakeOpsgenie
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.slack import FakeSlack
from tests.sinks.agent_rig import agent, drive, evidence, incidents, outbox, route
from tests.sinks.conftest import LOOPBACK, Fake, NoticeFactory, up

PD_KEY = "0123456789abcdef0123456789abcdef"


class SimulatedClock:
    """The fakes' clock, moved by the test together with the outbox's."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now.timestamp()

    def set(self, now: datetime) -> None:
        self.now = now


def _up(fakes: list[FakeService], fake: Fake, clock: SimulatedClock | None = None) -> Fake:
    if clock is not None:
        fake.clock = clock
    return up(fakes, fake)


def _until_limited(send: Callable[[], httpx.Response], limit: int) -> httpx.Response:
    answers = [send() for _ in range(limit + 1)]
    assert all(200 <= r.status_code < 300 for r in answers[:limit]), [r.status_code for r in answers]
    return answers[-1]


# -- each fake on its own ----------------------------------------------------------------------------
def test_jira_answers_429_with_retry_after_and_the_rate_limit_headers(fakes: list[FakeService]) -> None:
    clock = SimulatedClock()
    jira = _up(fakes, FakeJira(email="bot@example.com", token="tok", burst=3, per_second=0.5), clock)
    url, auth = f"{jira.url}/rest/api/3/search/jql", ("bot@example.com", "tok")
    r = _until_limited(lambda: httpx.get(url, params={"jql": "project = MM"}, auth=auth), 3)
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.headers["x-ratelimit-remaining"] == "0" and r.headers["ratelimit-reason"] == "jira-burst-based"
    assert r.json()["errorMessages"] == ["Rate limit exceeded."]
    clock.set(T0 + timedelta(seconds=2))  # the bucket refills with the (simulated) time
    assert httpx.get(url, params={"jql": "project = MM"}, auth=auth).status_code == 200


def test_servicenow_rate_limit_rule_counts_per_hour(fakes: list[FakeService]) -> None:
    clock = SimulatedClock()
    sn = _up(fakes, FakeServiceNow(username="aims", password="pw", per_hour=5), clock)
    r = _until_limited(lambda: httpx.get(f"{sn.url}/api/now/table/incident", auth=("aims", "pw")), 5)
    assert r.status_code == 429 and r.headers["retry-after"] == "720", "3600 s / 5 requests"
    assert r.headers["x-ratelimit-limit"] == "5"
    assert int(r.headers["x-ratelimit-reset"]) == int(clock()) + 721
    assert r.json()["error"]["message"] == "Rate limit exceeded"


def test_pagerduty_throttles_events_per_routing_key_without_retry_after(
        fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    pd = _up(fakes, FakePagerDuty(routing_key=PD_KEY, per_minute=3), SimulatedClock())
    sink = PagerDutySink(PagerDutySinkConfig.model_validate({"url": pd.url, "routing_key": PD_KEY,
                                                             "allowed_hosts": LOOPBACK}))
    for _ in range(3):
        sink.deliver(make_notice("update"), known=None)
    with pytest.raises(RetryableSinkError, match="429") as err:
        sink.deliver(make_notice("update"), known=None)
    assert err.value.retry_after is None, "PagerDuty gives no Retry-After: the outbox's own backoff applies"
    assert pd.throttles and pd.throttles[0][0] == "events per routing key"


def test_opsgenie_throttles_with_its_rate_limit_state_header(fakes: list[FakeService]) -> None:
    og = _up(fakes, FakeOpsgenie(api_key="genie", per_minute=2), SimulatedClock())
    headers = {"Authorization": "GenieKey genie"}
    body = {"message": "m", "alias": "a"}
    r = _until_limited(lambda: httpx.post(f"{og.url}/v2/alerts", json=body, headers=headers), 2)
    assert r.status_code == 429 and r.headers["x-ratelimit-state"] == "THROTTLED"
    assert "retry-after" not in r.headers


def test_github_secondary_and_primary_limits_answer_403(fakes: list[FakeService], make_notice: NoticeFactory) -> None:
    clock = SimulatedClock()
    gh = _up(fakes, FakeGitHub(token="tok", repo="acme/models", per_hour=6, writes_per_minute=2), clock)
    sink = GitHubSink(GitHubSinkConfig.model_validate({"url": gh.url, "token": "tok", "repository": "acme/models",
                                                       "allowed_hosts": LOOPBACK}))
    for _ in range(2):  # each open: a lookup (read) and a create (a content-creating write)
        sink.deliver(make_notice("open", fingerprint=f"{_:032x}"), known=None)
    with pytest.raises(RetryableSinkError, match="secondary rate limit") as secondary:
        sink.deliver(make_notice("open", fingerprint="f" * 32), known=None)
    assert secondary.value.retry_after == 30.0, "60 s / 2 writes"
    # the primary limit: 6 requests an hour in all (the refused write counted); the 7th is refused
    with pytest.raises(RetryableSinkError, match="API rate limit exceeded") as primary:
        sink.deliver(make_notice("open", fingerprint="e" * 32), known=None)
    refused = httpx.get(f"{gh.url}/repos/acme/models/issues", headers={
        "Authorization": "Bearer tok", "X-GitHub-Api-Version": "2022-11-28"})
    assert refused.status_code == 403 and refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > clock()
    assert primary.value.retry_after is not None


def test_slack_allows_a_short_burst_then_answers_429(fakes: list[FakeService]) -> None:
    slack = _up(fakes, FakeSlack(burst=2), SimulatedClock())
    r = _until_limited(lambda: httpx.post(slack.webhook_url, json={"text": "hi"}), 2)
    assert (r.status_code, r.text, r.headers["retry-after"]) == (429, "rate_limited", "1")


# -- the outbox against the limits ----------------------------------------------------------------
def _jira_sink(jira: FakeJira) -> dict[str, Any]:
    return {"type": "jira", "url": jira.url, "email": "bot@example.com", "api_token": "tok", "project_key": "MM",
            "allowed_hosts": LOOPBACK, "priorities": {"critical": "Highest", "high": "High", "medium": "Medium"}}


def _two_incidents(sc: Scenario) -> None:
    for h, shift in enumerate([2.0, 2.0, 3.0, 0.0, 0.0]):  # two incidents: open, update, resolve
        sc.hour(T0 + timedelta(hours=h), shift=shift)


def test_the_next_attempt_waits_for_the_servers_retry_after(scenario: Scenario, fakes: list[FakeService]) -> None:
    now = T0 + timedelta(hours=1)
    clock = SimulatedClock(now)
    jira = _up(fakes, FakeJira(email="bot@example.com", token="tok", search_lag=0, burst=3, per_second=1 / 60),
               clock)
    route(scenario, {"jira": _jira_sink(jira)})
    _two_incidents(scenario)
    a = agent(scenario)
    a.run_system(a.cfg.systems[0].id, now)
    a.outbox.deliver_due(now)  # the first open takes two requests, the second open's lookup the third
    first, second = outbox(a, "jira")
    assert first.status == "delivered" and second.status == "pending"
    assert jira.throttles and "429" in (second.last_error or "")
    wait = (second.next_attempt_at.replace(tzinfo=now.tzinfo) - now).total_seconds()
    assert 60 <= wait <= 61, f"Retry-After (60 s) wins over the first backoff (2-4 s), got {wait}"
    seen = len(jira.requests)
    clock.set(now + timedelta(seconds=59))
    a.outbox.deliver_due(now + timedelta(seconds=59))
    assert len(jira.requests) == seen, "no attempt before Retry-After has passed"
    end = drive(a, now + timedelta(seconds=60), now + timedelta(hours=2), step=timedelta(seconds=30),
                on_tick=clock.set)
    assert end < now + timedelta(hours=2)
    assert {m.status for m in outbox(a, "jira")} == {"delivered"} and len(jira.issues) == 2
    a.close()


def test_a_permanent_4xx_is_dead_at_once_with_a_record(scenario: Scenario, fakes: list[FakeService]) -> None:
    jira = _up(fakes, FakeJira(email="bot@example.com", token="tok", project="OTHER"))
    route(scenario, {"jira": _jira_sink(jira)})  # project MM does not exist on this site
    _two_incidents(scenario)
    a = agent(scenario)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.outbox.deliver_due(T0 + timedelta(hours=1))
    box = outbox(a, "jira")
    assert [(m.status, m.error_kind, m.attempts) for m in box] == [("dead", "permanent", 1)] * 2
    records = evidence(a, "notification_failed")
    assert [r["message_id"] for r in records] == [m.id for m in box]
    assert all("valid project is required" in r["error"] and r["error_kind"] == "permanent" for r in records)
    a.close()


@dataclass
class Tool:
    fake: FakeService
    sink: dict[str, Any]
    throttled: Reply
    second_step: Callable[[Request], bool]  # the request after the comment: priority, transition, close
    tickets: Callable[[], list[dict[str, Any]]]  # every ticket: {"open": bool, "comments": [...]}


def _tool(name: str, fakes: list[FakeService], clock: SimulatedClock) -> Tool:
    if name == "jira":
        jira = _up(fakes, FakeJira(email="bot@example.com", token="tok", search_lag=0), clock)
        return Tool(jira, _jira_sink(jira),
                    Reply(429, {"errorMessages": ["Rate limit exceeded."]}, {"Retry-After": "120"}),
                    lambda r: r.method == "PUT" or (r.path.endswith("/transitions") and r.method == "POST"),
                    lambda: [{"open": i["fields"]["status"]["statusCategory"]["key"] != "done",
                              "comments": [str(c) for c in jira.comments.get(k, [])]} for k, i in jira.issues.items()])
    if name == "servicenow":
        sn = _up(fakes, FakeServiceNow(username="aims", password="pw"), clock)
        return Tool(sn, {"type": "servicenow", "url": sn.url, "username": "aims", "password": "pw",
                         "allowed_hosts": LOOPBACK},
                    Reply(429, {"error": {"message": "Rate limit exceeded"}}, {"Retry-After": "120"}),
                    lambda r: r.method == "PATCH" and "work_notes" not in r.json(),
                    lambda: [{"open": rec["state"] not in ("6", "7", "8"), "comments": rec["work_notes_list"]}
                             for rec in sn.records.values()])
    gh = _up(fakes, FakeGitHub(token="tok", repo="acme/models"), clock)
    return Tool(gh, {"type": "github", "url": gh.url, "token": "tok", "repository": "acme/models",
                     "allowed_hosts": LOOPBACK},
                Reply(403, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "120"}),
                lambda r: r.method == "PATCH",
                lambda: [{"open": i["state"] == "open", "comments": gh.comments.get(n, [])}
                         for n, i in gh.issues.items()])


@pytest.mark.parametrize("name", ["jira", "servicenow", "github"])
def test_six_hours_of_5xx_and_429_lose_nothing_and_duplicate_nothing(name: str, scenario: Scenario,
                                                                     fakes: list[FakeService]) -> None:
    start = T0 + timedelta(hours=4)
    clock = SimulatedClock(start)
    tool = _tool(name, fakes, clock)
    route(scenario, {"tool": tool.sink})
    _two_incidents(scenario)
    a = agent(scenario)
    for h in range(1, 5):  # both incidents open, one is updated, both resolve: all queued in the outage
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=h))

    def phase(now: datetime) -> None:
        clock.set(now)
        hours = (now - start).total_seconds() / 3600
        if hours < 2:
            tool.fake.outage(Reply(503, {"message": "Service unavailable"}))
        elif hours < 4:
            tool.fake.outage(tool.throttled)
        elif hours < 6:  # the comment goes in, the request after it keeps failing
            tool.fake.outage(Reply(502, {"message": "Bad gateway"}), tool.second_step)
        else:
            tool.fake.recover()

    end = drive(a, start, start + timedelta(hours=6, seconds=-1), step=timedelta(minutes=5), on_tick=phase)
    box = outbox(a, "tool")
    assert "delivered" not in {m.status for m in box if m.action == "resolve"}, "still failing at 6 h"
    assert "dead" not in {m.status for m in box}
    assert sum(1 for r in tool.fake.requests if tool.second_step(r)) > 5, "the partial failure was retried"
    tool.fake.recover()
    drive(a, end, end + timedelta(hours=1), on_tick=clock.set)
    box = outbox(a, "tool")
    assert {m.status for m in box} == {"delivered"}
    tickets = tool.tickets()
    assert len(tickets) == len(incidents(a)) == 2, "one ticket per incident, none lost, none doubled"
    assert not any(t["open"] for t in tickets), "both resolved"
    markers = [m for t in tickets for c in t["comments"] for m in re.findall(r"aims message (\d+):", c)]
    commented = sorted(m.id for m in box if m.action != "open")
    assert sorted(int(m) for m in markers) == commented, "each update and resolve commented exactly once"
    a.close()
