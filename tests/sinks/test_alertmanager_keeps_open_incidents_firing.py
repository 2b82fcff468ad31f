"""Alertmanager forgets an alert that is not re-posted: the outbox re-posts every open incident at the
sink's cadence (also after Alertmanager restarted and lost its alerts), resolves with the original
startsAt and an endsAt after it, and ends the alert of the old severity when severity rises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.sinks.alertmanager import AlertmanagerSink, AlertmanagerSinkConfig
from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, am_alerts, incidents, route
from tests.sinks.conftest import NoticeFactory, RealService, alertmanager_sink_config


def _ends(alert: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(alert["endsAt"]).replace("Z", "+00:00"))


@pytest.mark.integration
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_open_incidents_are_reposted_until_resolved(store: str, scenario: Scenario, alertmanager: RealService,
                                                    request: pytest.FixtureRequest) -> None:
    sc = scenario
    if store == "postgresql":
        cfg = sc.config()
        cfg["agent"]["state_url"] = request.getfixturevalue("pg_url")
        sc.rewrite(cfg)
    route(sc, {"am": alertmanager_sink_config(alertmanager, refresh_every_s=60, hold_s=300)})
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    now = T0 + timedelta(hours=1)
    a.run_system(a.cfg.systems[0].id, now)
    a.deliver(now)
    fp = next(i.fingerprint for i in incidents(a) if i.kind == "prediction_drift")
    (alert,) = am_alerts(alertmanager, fp)
    first_end = _ends(alert)
    assert _ends(alert) - datetime.now(UTC) <= timedelta(seconds=301)

    # Alertmanager restarts and loses every alert; the next refresh brings the open incident back
    alertmanager.stop()
    alertmanager.start()
    assert am_alerts(alertmanager, fp) == []
    a.outbox.deliver_due(now + timedelta(seconds=30))
    assert am_alerts(alertmanager, fp) == [], "not yet: the refresh cadence has not passed"
    a.outbox.deliver_due(now + timedelta(seconds=61))
    (alert,) = am_alerts(alertmanager, fp)
    assert _ends(alert) >= first_end, "re-posted with a fresh endsAt"
    assert datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")) == T0 + timedelta(hours=1), (
        "startsAt stays the incident's start")

    sc.hour(T0 + timedelta(hours=1))
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=2))
    a.deliver(T0 + timedelta(hours=2))
    assert am_alerts(alertmanager, fp) == []
    a.outbox.deliver_due(T0 + timedelta(hours=3))
    assert am_alerts(alertmanager, fp) == [], "a resolved incident is not refreshed back to life"
    a.close()


@pytest.mark.integration
def test_severity_rise_ends_the_alert_of_the_old_severity(alertmanager: RealService,
                                                          make_notice: NoticeFactory) -> None:
    sink = AlertmanagerSink(AlertmanagerSinkConfig.model_validate(alertmanager_sink_config(alertmanager)))
    opened = make_notice("open", severity="medium")
    ref = sink.deliver(opened, known=None)
    raised = make_notice("update", severity="critical")
    ref = sink.deliver(raised, known=ref)
    (alert,) = am_alerts(alertmanager, opened.fingerprint)
    assert alert["labels"]["severity"] == "critical"
    sink.deliver(make_notice("resolve", severity="critical"), known=ref)
    assert am_alerts(alertmanager, opened.fingerprint) == []


def test_resolve_resends_the_original_start_and_ends_after_it(make_notice: NoticeFactory) -> None:
    posted: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(request.read())
        return httpx.Response(200)

    sink = AlertmanagerSink(AlertmanagerSinkConfig(url="http://127.0.0.1:9", allowed_hosts=["127.0.0.1"]),
                            clock=lambda: datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    sink.http.client = httpx.Client(transport=httpx.MockTransport(handler))
    notice = make_notice("resolve")
    sink.deliver(notice, known=None)
    (alert,) = json.loads(posted[0])
    starts = datetime.fromisoformat(alert["startsAt"])
    ends = datetime.fromisoformat(alert["endsAt"])
    assert starts == min(notice.started_at, datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    assert ends > starts
