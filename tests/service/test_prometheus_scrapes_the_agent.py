"""A real Prometheus scrapes a running agent, and its query API returns the agent's drift series."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from agent.api import create_app
from agent.runner import Agent
from agent.service import Service
from tests.conftest import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "services" / "prometheus.sh"
PROM_PORT = 19090
PROM = f"http://127.0.0.1:{PROM_PORT}"


@pytest.fixture
def agent_url(populated: tuple[Agent, Service]) -> Iterator[str]:
    agent, service = populated
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(agent, service=service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.05)
    assert server.started, "the agent's server did not start"
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def prometheus(agent_url: str, tmp_path: Path) -> Iterator[str]:
    state = tmp_path / "prometheus"
    target = agent_url.removeprefix("http://")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(state), target, str(PROM_PORT)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, f"Prometheus did not start: {started.stdout}{started.stderr}"
    try:
        yield PROM
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=60, check=False)


def _query(prom: str, expr: str) -> list[dict[str, object]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_the_agent_and_serves_its_drift_series(prometheus: str, agent_url: str) -> None:
    expected = {
        s.labels["feature"]: s.value
        for f in text_string_to_metric_families(httpx.get(f"{agent_url}/metrics", timeout=5).text)
        if f.name == "aims_feature_drift_score" for s in f.samples
    }
    assert set(expected) == {"x1", "x2", "colour"}
    series: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        series = _query(prometheus, 'aims_feature_drift_score{job="aims-agent",system="scoring"}')
        if len(series) == len(expected):
            break
        time.sleep(0.5)
    assert len(series) == len(expected), f"Prometheus holds {series}"
    for s in series:
        labels = s["metric"]
        assert isinstance(labels, dict) and isinstance(s["value"], list)
        assert float(s["value"][1]) == pytest.approx(expected[labels["feature"]])
        assert labels["method"] and labels["instance"] == agent_url.removeprefix("http://")
    up = _query(prometheus, 'up{job="aims-agent"}')
    assert up and up[0]["value"][1] == "1"  # type: ignore[index]
    detected = _query(prometheus, 'aims_feature_drift_detected{system="scoring",feature="x1"}')
    assert detected and detected[0]["value"][1] == "1", "x1 was shifted: Prometheus sees the drift"  # type: ignore[index]
