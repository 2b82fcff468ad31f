"""One message that fails in an unforeseen way (a 2xx login page instead of JSON, a sink that raises
something other than a sink error, a plugin whose bookkeeping fails) is contained to itself: it is
classified (permanent: dead at once and recorded; unexpected: retried with backoff), shown in /metrics,
and every later message still flows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from agent.runner import Agent, build_sinks
from agent.service import Service
from config.loader import load_config
from connectors.base import Notice, TicketRef
from connectors.registry import sink_config_model
from tests.conftest import T0, Scenario
from tests.fakes.http_server import Reply
from tests.fakes.jira import FakeJira
from tests.sinks.agent_rig import agent, evidence, incidents, metrics, outbox, route
from tests.sinks.conftest import LOOPBACK

JIRA = {"type": "jira", "email": "bot@example.com", "api_token": "tok", "project_key": "MM",
        "allowed_hosts": LOOPBACK}


def _two_incidents(sc: Scenario) -> None:
    """Hour 0 breaches data quality and prediction drift: two incidents, two `open` messages per sink."""
    for h, shift in enumerate([2.0, 2.0, 3.0, 0.0, 0.0]):
        sc.hour(T0 + timedelta(hours=h), shift=shift)


def test_a_login_page_with_200_is_permanent_and_later_messages_flow(scenario: Scenario) -> None:
    jira = FakeJira(email="bot@example.com", token="tok").start()
    try:
        route(scenario, {"jira": {**JIRA, "url": jira.url}})
        _two_incidents(scenario)
        a = agent(scenario)
        now = T0 + timedelta(hours=1)
        a.run_system(a.cfg.systems[0].id, now)
        # a proxy in front of Jira answers the first request with its single-sign-on page
        jira.fail_next(Reply(200, text="<html><title>Sign in</title><body>SSO</body></html>"))
        stats = a.outbox.deliver_due(now)
        first, second = outbox(a, "jira")
        assert (first.status, first.error_kind, first.attempts) == ("dead", "permanent", 1)
        assert "not JSON" in (first.last_error or "") and "Sign in" in (first.last_error or "")
        assert second.status == "delivered", "the next message is not blocked by the poisoned one"
        assert len(jira.issues) == 1 and stats.dead == 1
        (failed,) = evidence(a, "notification_failed")
        assert (failed["message_id"], failed["error_kind"], failed["sink"]) == (first.id, "permanent", "jira")
        text = metrics(a)
        assert 'aims_outbox_dead{sink="jira"} 1.0' in text
        assert 'aims_notifications_failed_total{sink="jira"} 1.0' in text
        a.close()
    finally:
        jira.stop()


class BuggySink:
    """A third-party sink with bugs: ``deliver`` raises KeyError for one fingerprint the first time, and
    ``describe`` (called while the outbox records the delivery) raises once when asked to."""

    refresh_every = timedelta(seconds=30)

    def __init__(self) -> None:
        self.poison: str | None = None
        self.describe_fails = 0
        self.refresh_fails = True
        self.delivered: list[int] = []

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        if notice.fingerprint == self.poison:
            self.poison = None
            raise KeyError("issue")
        self.delivered.append(notice.message_id)
        return TicketRef(remote_id=f"buggy-{notice.fingerprint[:8]}")

    def describe(self) -> str:
        if self.describe_fails:
            self.describe_fails -= 1
            raise RuntimeError("describe broke")
        return "buggy sink"

    def refresh(self, notices: Sequence[Notice]) -> None:
        if self.refresh_fails:
            raise RuntimeError("refresh broke")


def _buggy_agent(sc: Scenario, buggy: BuggySink) -> Agent:
    # the config routes to a webhook named "buggy"; the agent is given the buggy object under that name
    route(sc, {"buggy": {"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s3cret-hook-key",
                         "allowed_hosts": LOOPBACK}})
    cfg = load_config(sc.config_path, sink_config=sink_config_model)
    sinks: dict[str, Any] = {**build_sinks(cfg, sc.dir), "buggy": buggy}
    return Agent(cfg, base_dir=sc.dir, sinks=sinks)


def test_an_unexpected_exception_is_retried_with_backoff_and_shown(scenario: Scenario,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    buggy = BuggySink()
    a = _buggy_agent(scenario, buggy)
    _two_incidents(scenario)
    now = T0 + timedelta(hours=1)
    a.run_system(a.cfg.systems[0].id, now)
    buggy.poison = incidents(a)[0].fingerprint
    with caplog.at_level(logging.ERROR, logger="aims.incidents"):
        a.outbox.deliver_due(now)  # neither the KeyError nor the refresh failure escapes
    first, second = outbox(a, "buggy")
    assert (first.status, first.error_kind, first.attempts) == ("pending", "unexpected", 1)
    assert "KeyError" in (first.last_error or "") and first.next_attempt_at.replace(tzinfo=now.tzinfo) > now
    assert second.status == "delivered"
    assert "KeyError" in caplog.text, "the traceback is logged"
    assert 'aims_outbox_failing{error="unexpected",sink="buggy"} 1.0' in metrics(a)
    assert a.outbox.totals[("buggy", "refresh_failed")] == 1
    a.outbox.deliver_due(now + timedelta(minutes=15))
    assert {m.status for m in outbox(a, "buggy")} == {"delivered"}
    assert "aims_outbox_failing{" not in metrics(a)
    a.close()


def test_a_failure_while_recording_the_delivery_is_contained_too(scenario: Scenario) -> None:
    buggy = BuggySink()
    buggy.describe_fails = 1  # raises inside the outbox's own transaction, which rolls back
    a = _buggy_agent(scenario, buggy)
    _two_incidents(scenario)
    now = T0 + timedelta(hours=1)
    a.run_system(a.cfg.systems[0].id, now)
    a.outbox.deliver_due(now)
    first, second = outbox(a, "buggy")
    assert (first.status, first.error_kind, first.attempts) == ("pending", "unexpected", 1)
    assert "describe broke" in (first.last_error or "")
    assert second.status == "delivered", "the rolled-back message backs off instead of blocking the rest"
    a.outbox.deliver_due(now + timedelta(minutes=15))
    assert {m.status for m in outbox(a, "buggy")} == {"delivered"}
    a.close()


def test_the_delivery_job_survives_an_unexpected_error(scenario: Scenario, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    route(scenario, {})
    a = agent(scenario)

    def broken(now: object = None) -> int:
        raise RuntimeError("outbox bug")

    monkeypatch.setattr(a, "deliver", broken)
    with caplog.at_level(logging.ERROR, logger="aims.service"):
        Service(a, run_on_start=False)._deliver()
    assert "outbox bug" in caplog.text
    a.close()
