"""An incident links what a responder opens first: the Grafana panel of the shipped dashboard that shows
its kind, for its system and window (``agent.grafana_url``); the evidence record of the check run
(``GET /api/v1/evidence/{seq}``) and a report of the period (``GET /api/v1/evidence/report``) under
``agent.server.external_url``. A link that cannot be built is left out, never a placeholder."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from agent.api import create_app
from agent.links import PANELS
from tests.conftest import T0, Scenario
from tests.sinks.agent_rig import agent, incidents, local_ticket, route

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "aims-agent.json"
# the metric each kind's panel must show
PANEL_METRIC = {"drift": "aims_dataset_drift_share", "prediction_drift": "aims_prediction_drift_score",
                "bias": "aims_fairness_metric", "performance": "aims_performance_metric",
                "data_quality": "aims_data_quality_findings",
                "collector_down": "aims_check_last_success_timestamp_seconds", "reassessment": "aims_incidents_open"}


def test_every_kind_links_a_panel_of_the_shipped_dashboard_that_shows_it() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["id"]: p for p in dashboard["panels"]}
    assert dashboard["uid"] == "aims-agent"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "system"]
    for kind, panel_id in PANELS.items():
        exprs = " ".join(t["expr"] for t in panels[panel_id]["targets"])
        assert PANEL_METRIC[kind] in exprs and "$system" in exprs, (kind, panel_id, exprs)


def test_links_to_the_panel_the_evidence_record_and_the_report(scenario: Scenario) -> None:
    sc = scenario
    system_id = route(sc, {})
    cfg = sc.config()
    cfg["agent"]["grafana_url"] = "https://grafana.example.com/"
    cfg["agent"]["server"] = {"external_url": "https://aims.example.com"}
    sc.rewrite(cfg)
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    a.run_system(system_id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    ticket = local_ticket(sc, "prediction_drift")
    links = ticket["content"]["links"]
    assert set(links) == {"grafana", "evidence", "report"}

    grafana = urlsplit(links["grafana"])
    assert (grafana.netloc, grafana.path) == ("grafana.example.com", "/d/aims-agent/aims-agent-ai-system-monitoring")
    query = parse_qs(grafana.query)
    assert query["var-system"] == [system_id] and query["viewPanel"] == ["10"] and query["to"] == ["now"]
    assert int(query["from"][0]) == int((T0 - timedelta(days=1)).timestamp() * 1000), "a day before the window"

    evidence, report = urlsplit(links["evidence"]), urlsplit(links["report"])
    assert evidence.netloc == report.netloc == "aims.example.com"
    assert parse_qs(report.query) == {"system": [system_id], "since": [(T0 - timedelta(days=7)).isoformat()]}
    markdown = next(p for p in (sc.dir / "tickets").glob("*.md") if "prediction" in p.name).read_text()
    assert f"- evidence: {links['evidence']}" in markdown and f"- report: {links['report']}" in markdown

    with TestClient(create_app(a)) as api:
        record = api.get(evidence.path)
        assert record.status_code == 200, record.text
        assert record.json()["kind"] == "check_run" and record.json()["system"] == system_id
        page = api.get(f"{report.path}?{report.query}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert system_id in page.text
        assert api.get("/api/v1/evidence/999999").status_code == 404
        assert api.get("/api/v1/evidence/report", params={"system": "nope"}).status_code == 404
    a.close()


def test_links_that_cannot_be_built_are_left_out(scenario: Scenario) -> None:
    sc = scenario
    route(sc, {})
    sc.hour(T0, shift=2.0)
    a = agent(sc)
    a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=1))
    a.deliver(T0 + timedelta(hours=1))
    for inc in incidents(a):
        assert inc.content["links"] == {}
        body = str(inc.content["body_markdown"])
        assert "## Links" not in body and "evidence record" not in body
    a.close()
