"""A tool down for days loses no ticket: retryable failures are retried for ``agent.outbox.retry_for``
(7 days by default), counted from the first failure, not for a number of attempts. After that, or at
once for a permanent 4xx, the message is dead: recorded as ``notification_failed``, counted in /metrics,
listed by ``aims-agent outbox list``. It holds the later messages of its ticket (so nothing overtakes
it) until a person requeues it (``aims-agent outbox requeue``, or the API with the operate scope) or
discards it; both are recorded as evidence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.api import create_app
from agent.cli import main
from tests.conftest import T0, Scenario
from tests.fakes.http_server import Reply
from tests.fakes.jira import FakeJira
from tests.sinks.agent_rig import agent, drive, evidence, incidents, metrics, outbox, route
from tests.sinks.conftest import LOOPBACK

DOWN = Reply(503, {"errorMessages": ["Service unavailable"], "errors": {}})
OPS = {"Authorization": "Bearer ops-token-0123456789"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789"}


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    fake = FakeJira(email="bot@example.com", token="tok", search_lag=0).start()
    yield fake
    fake.stop()


def _setup(sc: Scenario, jira: FakeJira, **outbox_cfg: Any) -> None:
    route(sc, {"jira": {"type": "jira", "url": jira.url, "email": "bot@example.com", "api_token": "tok",
                        "project_key": "MM", "allowed_hosts": LOOPBACK}})
    cfg = sc.config()
    cfg["agent"]["tokens"] = [{"name": "ops", "value": "ops-token-0123456789", "scopes": ["read", "operate"]},
                              {"name": "viewer", "value": "viewer-token-0123456789", "scopes": ["read"]}]
    if outbox_cfg:
        cfg["agent"]["outbox"] = outbox_cfg
    sc.rewrite(cfg)
    for h, shift in enumerate([2.0, 2.0, 3.0, 0.0, 0.0]):  # two incidents: open, update, resolve
        sc.hour(T0 + timedelta(hours=h), shift=shift)


def _judge(a: Any) -> None:
    for h in range(1, 5):
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=h))


def test_a_tool_down_for_three_days_loses_nothing(scenario: Scenario, jira: FakeJira) -> None:
    _setup(scenario, jira)
    jira.outage(DOWN)
    a = agent(scenario)
    _judge(a)
    end = drive(a, T0 + timedelta(hours=4), T0 + timedelta(days=3), step=timedelta(minutes=30))
    box = outbox(a, "jira")
    assert {m.status for m in box} == {"pending"}, "three days of 503: still trying, nothing given up"
    assert max(m.attempts for m in box) > 50, "more attempts than the old limit of 50"
    assert evidence(a, "notification_failed") == []
    jira.recover()
    drive(a, end, end + timedelta(hours=1))
    assert {m.status for m in outbox(a, "jira")} == {"delivered"}
    assert len(jira.issues) == 2 and jira.open_issues() == [], "one issue per incident, each resolved"
    a.close()


def test_past_the_budget_a_message_is_dead_holds_its_ticket_and_can_be_requeued(
        scenario: Scenario, jira: FakeJira, capsys: pytest.CaptureFixture[str]) -> None:
    _setup(scenario, jira, retry_for="1d")
    jira.outage(DOWN)
    a = agent(scenario)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))  # the two opens
    end = drive(a, T0 + timedelta(hours=1), T0 + timedelta(days=1, hours=2), step=timedelta(minutes=10))
    opens = outbox(a, "jira")
    assert [m.status for m in opens] == ["dead", "dead"]
    assert all(m.error_kind == "retryable" for m in opens)
    failed = evidence(a, "notification_failed")
    assert [f["message_id"] for f in failed] == [m.id for m in opens]
    assert "still failing after 1d" in failed[0]["error"] and "retry_for" in failed[0]["error"]
    text = metrics(a)
    assert 'aims_outbox_dead{sink="jira"} 2.0' in text and 'aims_notifications_failed_total{sink="jira"} 2.0' in text

    # the tool is back; later changes of the same tickets are held behind their dead open
    jira.recover()
    for h in range(2, 5):
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=h))
    end = drive(a, end, end + timedelta(hours=1))
    held = [m for m in outbox(a, "jira") if m.status == "pending"]
    assert len(held) == 3 and all(m.attempts == 0 for m in held), "nothing overtakes a dead message"
    assert jira.issues == {}

    config = str(scenario.config_path)
    assert main(["outbox", "list", "--config", config, "--status", "dead"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{m.id:>8}  jira" in listed for m in opens) and "still failing after 1d" in listed
    assert main(["outbox", "list", "--config", config, "--status", "pending"]) == 0
    assert capsys.readouterr().out.count(" held ") == 3

    # one is requeued from the command line, the other through the API
    assert main(["outbox", "requeue", "--config", config, str(opens[0].id), "--by", "ana",
                 "--reason", "Jira is back"]) == 0
    assert "requeued" in capsys.readouterr().out
    with TestClient(create_app(a)) as api:
        body = {"by": "ben@example.com", "reason": "Jira is back"}
        assert api.post(f"/api/v1/outbox/{opens[1].id}/requeue", json=body, headers=VIEWER).status_code == 403
        r = api.post(f"/api/v1/outbox/{opens[1].id}/requeue", json=body, headers=OPS)
        assert r.status_code == 200, r.text
        again = api.post(f"/api/v1/outbox/{opens[1].id}/requeue", json=body, headers=OPS)
        assert again.status_code == 409 and "not dead" in again.json()["detail"]
        assert api.post("/api/v1/outbox/999999/requeue", json=body, headers=OPS).status_code == 404
        assert api.get("/api/v1/outbox", params={"status": "dead"}, headers=VIEWER).json() == []
    drive(a, end, end + timedelta(hours=1))
    box = outbox(a, "jira")
    assert {m.status for m in box} == {"delivered"}
    for inc in incidents(a):
        mine = sorted((m for m in box if m.incident_id == inc.id), key=lambda m: m.id)
        assert sorted(mine, key=lambda m: m.delivered_at) == mine, "each ticket's messages in order"
    assert len(jira.issues) == 2 and jira.open_issues() == []
    assert [e["by"] for e in evidence(a, "notification_requeued")] == ["ana", "ben@example.com (token ops)"]
    assert 'aims_outbox_dead{sink="jira"}' not in metrics(a)
    assert 'aims_notifications_failed_total{sink="jira"} 2.0' in metrics(a), "a counter never goes down"
    a.close()


def test_a_permanent_error_is_dead_at_once_and_discarding_it_releases_its_ticket(
        scenario: Scenario, jira: FakeJira, capsys: pytest.CaptureFixture[str]) -> None:
    _setup(scenario, jira)
    a = agent(scenario)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    jira.outage(Reply(400, {"errorMessages": [], "errors": {"priority": "Priority name 'P0' is not valid"}}),
                lambda r: r.method == "POST" and r.path == "/rest/api/3/issue")
    a.outbox.deliver_due(T0 + timedelta(hours=1))
    opens = outbox(a, "jira")
    assert [(m.status, m.error_kind, m.attempts) for m in opens] == [("dead", "permanent", 1)] * 2
    assert "Priority name 'P0' is not valid" in evidence(a, "notification_failed")[0]["error"]
    jira.recover()
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=3))  # an update of the first incident
    a.outbox.deliver_due(T0 + timedelta(hours=3))
    update = outbox(a, "jira")[-1]
    assert (update.action, update.status, update.attempts) == ("update", "pending", 0)
    config = str(scenario.config_path)
    with pytest.raises(SystemExit) as usage:
        main(["outbox", "discard", "--config", config, str(update.id)])  # --reason is required
    assert usage.value.code == 2
    capsys.readouterr()
    assert main(["outbox", "discard", "--config", config, str(update.id), "--reason", "x"]) == 2
    assert "not dead" in capsys.readouterr().err
    first = next(m for m in opens if m.incident_id == update.incident_id)
    assert main(["outbox", "discard", "--config", config, str(first.id), "--reason", "opened by hand"]) == 0
    a.outbox.deliver_due(T0 + timedelta(hours=3, minutes=1))
    assert outbox(a, "jira")[-1].status == "delivered", "released: the update opens the ticket it lacked"
    assert len(jira.issues) == 1
    assert evidence(a, "notification_discarded")[0]["reason"] == "opened by hand"
    a.close()
