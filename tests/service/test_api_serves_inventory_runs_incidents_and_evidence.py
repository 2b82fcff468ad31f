"""The HTTP API: every route documented with a response schema, guarded by its token scope, with clear
4xx bodies; check runs, incidents with human oversight, and evidence query, export and verification."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from agent.api import MAX_BODY, create_app
from agent.evidence_pack import verify_pack
from agent.runner import Agent
from agent.service import Service
from config.loader import load_config
from tests.conftest import T0, Scenario
from tests.service.conftest import OPERATE, READ, configure

OPEN_ROUTES = {"/healthz", "/readyz", "/metrics"}


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every documented route but the open ones (included routers too)."""
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() if path not in OPEN_ROUTES for method in ops]


def _concrete(path: str) -> str:
    return (path.replace("{system_id}", "scoring").replace("{run_id}", "1").replace("{incident_id}", "1")
            .replace("{message_id}", "1").replace("{seq}", "1"))


def test_openapi_documents_every_route_with_a_response_schema_and_bearer_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/v1/systems", "/api/v1/systems/{system_id}", "/api/v1/systems/{system_id}/run",
              "/api/v1/check-runs", "/api/v1/check-runs/{run_id}", "/api/v1/incidents",
              "/api/v1/incidents/{incident_id}", "/api/v1/incidents/{incident_id}/acknowledge",
              "/api/v1/incidents/{incident_id}/override", "/api/v1/evidence", "/api/v1/evidence/export",
              "/api/v1/evidence/verify", "/api/v1/evidence/report", "/api/v1/evidence/{seq}", "/api/v1/outbox",
              "/api/v1/outbox/{message_id}/requeue", "/api/v1/outbox/{message_id}/discard", "/api/v1/decisions",
              "/healthz", "/readyz", "/metrics",
              "/api/v1/ingest/cloudevents", "/api/v1/ingest/{system_id}/cloudevents"):
        assert p in paths, p
    for method, path in _api_routes(client):
        op = paths[path][method.lower()]
        assert op.get("security") == [{"HTTPBearer": []}], f"{method} {path}"
        if path.startswith("/api/v1/ingest/"):
            continue  # the ingest router documents its own responses
        ok = op["responses"]["200"]["content"]
        schema = next(iter(ok.values())).get("schema", {})
        if path not in ("/api/v1/evidence/export", "/api/v1/evidence/report"):  # a zip, an HTML page
            assert schema.get("$ref") or schema.get("items", {}).get("$ref"), f"{method} {path}"
        assert "401" in op["responses"] and "403" in op["responses"], f"{method} {path}"
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert client.get("/docs").status_code == 200


def test_every_route_but_health_and_metrics_needs_a_token(client: TestClient) -> None:
    routes = _api_routes(client)
    assert len(routes) >= 15
    for method, path in routes:
        r = client.request(method, _concrete(path))
        assert r.status_code == 401, f"{method} {path}: {r.status_code}"
        assert r.json() == {"detail": "missing bearer token"}
        assert r.headers["www-authenticate"] == "Bearer"
    for path in OPEN_ROUTES:
        assert client.get(path).status_code == 200, path


def test_a_read_token_cannot_operate_and_a_wrong_token_is_refused(client: TestClient) -> None:
    body = {"by": "jane@example.com", "reason": "looked at it"}
    r = client.post("/api/v1/incidents/1/acknowledge", json=body, headers=READ)
    assert r.status_code == 403 and r.json() == {"detail": "token 'reader' lacks the 'operate' scope"}
    r = client.post("/api/v1/ingest/cloudevents", content=b"{}", headers=OPERATE)
    assert r.status_code == 403 and r.json() == {"detail": "token 'operator' lacks the 'ingest' scope"}
    r = client.get("/api/v1/systems", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid token"}
    r = client.get("/api/v1/systems", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401


def test_systems_are_the_inventory_with_their_current_decisions(client: TestClient) -> None:
    systems = client.get("/api/v1/systems", headers=READ).json()
    assert [s["id"] for s in systems] == ["scoring"]
    assert systems[0]["owner"] == {"team": "ML Platform", "contact": "ml-oncall@example.com", "escalation": None}
    detail = client.get("/api/v1/systems/scoring", headers=READ).json()
    assert {d["check"] for d in detail["current_decisions"]} >= {"drift", "fairness", "performance"}
    r = client.get("/api/v1/systems/nope", headers=READ)
    assert r.status_code == 404 and r.json() == {"detail": "no system 'nope'"}


def test_check_runs_are_listed_fetched_and_triggered(client: TestClient, populated: tuple[Agent, Service]) -> None:
    runs = client.get("/api/v1/check-runs?system=scoring", headers=READ).json()
    assert len(runs) == 4 and runs[0]["window_start"] > runs[-1]["window_start"], "newest first"
    one = client.get(f"/api/v1/check-runs/{runs[-1]['id']}", headers=READ).json()
    assert one["rows"] == 400 and "drift" in one["results"]
    assert client.get("/api/v1/check-runs/999", headers=READ).json() == {"detail": "no check run 999"}
    assert client.get("/api/v1/check-runs?limit=0", headers=READ).status_code == 422
    agent, _ = populated
    agent.clock = lambda: T0 + timedelta(hours=5)  # one more window has ended
    r = client.post("/api/v1/systems/scoring/run", headers=OPERATE)
    assert r.status_code == 200, r.text
    assert [w["status"] for w in r.json()["windows"]] == ["insufficient_data"]
    assert client.post("/api/v1/systems/scoring/run", headers=OPERATE).json() == {"windows": []}


def test_a_run_is_refused_with_409_while_another_replica_holds_the_system(
        client: TestClient, populated: tuple[Agent, Service], monkeypatch: pytest.MonkeyPatch) -> None:
    _, service = populated
    monkeypatch.setattr("agent.api.RUN_NOW_WAIT_S", 0.1)
    with service.locks.hold("scoring") as mine:
        assert mine
        r = client.post("/api/v1/systems/scoring/run", headers=OPERATE)
    assert r.status_code == 409
    assert r.json() == {"detail": "system 'scoring' is still being checked after 0.1 s (by this or another "
                                  "replica); try again"}


def test_incidents_are_listed_acknowledged_and_overridden_with_a_reason(client: TestClient) -> None:
    open_ = client.get("/api/v1/incidents?status=open", headers=READ).json()
    assert open_, "drift and bias opened incidents"
    iid = open_[0]["id"]
    detail = client.get(f"/api/v1/incidents/{iid}", headers=READ).json()
    assert detail["content"] and detail["notifications"][0]["sink"] == "local"
    body = {"by": "jane@example.com", "reason": "upstream change, retraining planned"}
    r = client.post(f"/api/v1/incidents/{iid}/acknowledge", json=body, headers=OPERATE)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = client.post(f"/api/v1/incidents/{iid}/override", json={**body, "state": "ok"}, headers=OPERATE)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    r = client.post(f"/api/v1/incidents/{iid}/acknowledge", json=body, headers=OPERATE)
    assert r.status_code == 409 and r.json() == {"detail": f"incident {iid} is already resolved"}
    r = client.post(f"/api/v1/incidents/{iid}/override", json={"by": "x", "reason": "ok"}, headers=OPERATE)
    assert r.status_code == 422, "the override needs a state"
    assert client.post("/api/v1/incidents/9999/acknowledge", json=body, headers=OPERATE).status_code == 404


def test_evidence_is_queried_by_period_system_and_kind(client: TestClient) -> None:
    everything = client.get("/api/v1/evidence?limit=5000", headers=READ).json()
    runs = client.get("/api/v1/evidence?kind=check_run&system=scoring", headers=READ).json()
    assert len(runs) == 4 and {r["kind"] for r in runs} == {"check_run"}
    # every record of the populated agent carries the time it was judged at (the agent's clock)
    ts = sorted({r["ts"] for r in everything})
    later = client.get("/api/v1/evidence", params={"since": ts[-1]}, headers=READ).json()
    earlier = client.get("/api/v1/evidence", params={"until": ts[-1], "limit": 5000}, headers=READ).json()
    assert len(later) + len(earlier) == len(everything)
    assert all(r["ts"] >= ts[-1] for r in later) and all(r["ts"] < ts[-1] for r in earlier)
    page = client.get(f"/api/v1/evidence?after_seq={everything[1]['seq']}&limit=2", headers=READ).json()
    assert [r["seq"] for r in page] == [everything[2]["seq"], everything[3]["seq"]]
    assert client.get("/api/v1/evidence?since=yesterday", headers=READ).status_code == 422


def test_evidence_exports_as_a_zip_that_verifies_offline(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/api/v1/evidence/export?system=scoring", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert {"evidence-pack/controls.csv", "evidence-pack/manifest.json",
                "evidence-pack/records.jsonl"} <= set(zf.namelist())
        zf.extractall(tmp_path)
    n = verify_pack(tmp_path / "evidence-pack")
    assert n == len(client.get("/api/v1/evidence?limit=5000", headers=READ).json())
    assert OPERATE["Authorization"].split()[1] not in r.content.decode("latin-1"), "no token in the pack"


def test_ledger_verification_names_the_first_altered_record(client: TestClient,
                                                            populated: tuple[Agent, Service]) -> None:
    ok = client.get("/api/v1/evidence/verify", headers=READ).json()
    assert ok["intact"] is True and ok["records"] > 5
    agent, _ = populated
    with agent.store.transaction() as s:
        s.execute(text("UPDATE evidence SET kind = 'forged' WHERE seq = 3"))
    r = client.get("/api/v1/evidence/verify", headers=READ)
    assert r.status_code == 409
    assert r.json()["intact"] is False and r.json()["first_bad_seq"] == 3


def test_bodies_over_the_limit_are_refused_whether_announced_or_streamed(client: TestClient) -> None:
    url = "/api/v1/incidents/1/acknowledge"
    r = client.post(url, content=b"x" * (MAX_BODY + 1), headers=OPERATE)
    assert r.status_code == 413 and r.json() == {"detail": f"request body over {MAX_BODY} bytes"}

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    r = client.post(url, content=chunks(), headers={**OPERATE, "Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": f"request body over {MAX_BODY} bytes"}


def test_reads_are_open_without_tokens_but_writes_never_are(scenario: Scenario) -> None:
    configure(scenario, tokens=False)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        with TestClient(create_app(agent)) as c:
            assert c.get("/api/v1/systems").status_code == 200
            assert c.post("/api/v1/systems/scoring/run").status_code == 401
    finally:
        agent.close()


def test_metrics_can_require_a_token(scenario: Scenario) -> None:
    configure(scenario)
    cfg = scenario.config()
    cfg["agent"]["server"] = {"metrics_require_token": True}
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        with TestClient(create_app(agent)) as c:
            assert c.get("/metrics").status_code == 401
            assert c.get("/metrics", headers=READ).status_code == 200
            assert c.get("/healthz").status_code == 200
    finally:
        agent.close()
