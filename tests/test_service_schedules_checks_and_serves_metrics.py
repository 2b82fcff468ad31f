"""The running service: APScheduler fires the checks, /metrics is scraped over HTTP, writes need a token."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition import MAX_STALE_S
from agent.runner import Agent
from agent.service import build_app
from config.loader import load_config
from tests.conftest import Scenario, free_port, make_rows


class Server:
    def __init__(self, app: Any, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(scenario: Scenario) -> Iterator[tuple[Server, Agent]]:
    """A service with 2-second windows judged every second over a file of 'live' predictions."""
    now = datetime.now(UTC)
    # drifted rows for ten minutes: the incident stays open however slowly the machine runs the test
    rows = make_rows(np.random.default_rng(3), 20000, now - timedelta(seconds=20), span=timedelta(seconds=600),
                     shift=1.5)
    rows.to_parquet(scenario.dir / "live.parquet", index=False)
    cfg = scenario.config()
    s = cfg["systems"][0]
    s["source"] = {"type": "file", "path": str(scenario.dir / "live.parquet")}
    s["window"] = {"size": "2s", "min_rows": 20, "start": (now - timedelta(seconds=10)).isoformat()}
    s["schedule"] = {"every": "1s"}
    # 66-row windows flap between drifted and not; the tests here are about the service, not recovery
    s["checks"]["drift"]["hysteresis"] = {"open_after": 1, "close_after": 10_000}
    cfg["agent"]["tokens"] = [{"name": "reader", "value": "read-token-0123456789", "scopes": ["read"]},
                              {"name": "operator", "value": "operate-token-0123456789", "scopes": ["read", "operate"]}]
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    with Server(build_app(agent), free_port()) as srv:
        yield srv, agent
    agent.close()


READ = {"Authorization": "Bearer read-token-0123456789"}
OPERATE = {"Authorization": "Bearer operate-token-0123456789"}


def test_scheduler_fires_checks_and_metrics_are_scraped_over_http(live: tuple[Server, Agent]) -> None:
    srv, _ = live
    deadline = time.monotonic() + 20
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = httpx.get(f"{srv.url}/api/v1/check-runs", headers=READ, timeout=5).json()
        if len(runs) >= 3:
            break
        time.sleep(0.3)
    assert len(runs) >= 3, "the scheduled job judged windows on its own"
    # while checks commit a scrape may serve the last body, for MAX_STALE_S at most
    deadline = time.monotonic() + MAX_STALE_S + 5
    while True:
        resp = httpx.get(f"{srv.url}/metrics", timeout=5)
        if 'aims_feature_drift_score{feature="x1"' in resp.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("aims_feature_drift_score", "aims_feature_drift_detected", "aims_dataset_drift_share",
                 "aims_fairness_metric", "aims_check_last_success_timestamp_seconds", "aims_check_runs",
                 "aims_check_failures", "aims_incidents_open", "aims_build_info"):
        assert name in families, name
    drift = [s for s in families["aims_feature_drift_score"].samples if s.labels["feature"] == "x1"]
    assert drift and drift[0].labels["system"] == "scoring" and drift[0].labels["method"]
    assert "aims_check_runs_total" in resp.text and "aims_build_info{" in resp.text
    ready = httpx.get(f"{srv.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"state_store": True, "scheduler": True}


def test_write_endpoints_need_a_token_with_the_operate_scope(live: tuple[Server, Agent]) -> None:
    srv, _ = live
    url = f"{srv.url}/api/v1/systems/scoring/run"
    assert httpx.post(url, timeout=5).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert httpx.post(url, headers=READ, timeout=5).status_code == 403
    assert httpx.post(url, headers=OPERATE, timeout=30).status_code == 200
    assert httpx.get(f"{srv.url}/api/v1/systems", timeout=5).status_code == 401, "reads need a token once any exists"
    systems = httpx.get(f"{srv.url}/api/v1/systems", headers=READ, timeout=5).json()
    assert systems[0]["owner"]["team"] == "ML Platform"


def test_oversized_bodies_are_refused_with_413(live: tuple[Server, Agent]) -> None:
    srv, _ = live
    r = httpx.post(f"{srv.url}/api/v1/incidents/1/acknowledge", headers=OPERATE, content=b"x" * (2 << 20))
    assert r.status_code == 413


def test_acknowledge_and_override_are_recorded_as_human_oversight(live: tuple[Server, Agent]) -> None:
    srv, _ = live
    deadline = time.monotonic() + 20
    incidents: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not incidents:
        found = httpx.get(f"{srv.url}/api/v1/incidents?status=open", headers=READ, timeout=5).json()
        incidents = [i for i in found if i["kind"] == "drift"]
        time.sleep(0.3)
    assert incidents, "the shifted data opens a drift incident"
    iid = incidents[0]["id"]
    body = {"by": "jane.doe@example.com", "reason": "known upstream change, retraining scheduled"}
    r = httpx.post(f"{srv.url}/api/v1/incidents/{iid}/acknowledge", json=body, headers=OPERATE, timeout=10)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{srv.url}/api/v1/incidents/{iid}/override", json={**body, "state": "ok"}, headers=OPERATE,
                   timeout=10)
    assert r.status_code == 200, r.text
    assert httpx.post(f"{srv.url}/api/v1/incidents/{iid}/override", json={"by": "x"}, headers=OPERATE,
                      timeout=5).status_code == 422
    ev = httpx.get(f"{srv.url}/api/v1/evidence?kind=human_override", headers=READ, timeout=5).json()
    assert [e["payload"]["action"] for e in ev] == ["acknowledge", "override"]
    assert ev[0]["payload"]["by"] == "jane.doe@example.com"
    assert "iso42001:A.9.2" in ev[0]["controls"]
    assert "operate-token" not in str(ev), "a token never reaches the evidence"
    inc = httpx.get(f"{srv.url}/api/v1/incidents/{iid}", headers=READ, timeout=5).json()
    assert inc["status"] == "resolved"
