"""The image's HEALTHCHECK probes the port the agent was started on: --port, else the config's
``agent.server.port``, never a hard-coded 9464."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from agent import healthcheck
from tests.conftest import free_port


def test_the_url_follows_the_command_line_then_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("agent:\n  server: {host: 0.0.0.0, port: 8123}\nsystems: []\n")
    assert healthcheck.url_for(["aims-agent", "run", "--config", str(cfg)]) == "http://127.0.0.1:8123/healthz"
    assert healthcheck.url_for(["aims-agent", "run", "--config", str(cfg), "--port", "9000"]) == \
        "http://127.0.0.1:9000/healthz"
    assert healthcheck.url_for(["aims-agent", "run", f"--config={cfg}", "--host", "::1"]) == \
        "http://[::1]:8123/healthz"
    assert healthcheck.url_for([]) == "http://127.0.0.1:9464/healthz"
    cfg.write_text("agent:\n  server: {port: '${AIMS_PORT}'}\n")  # unresolved here: the default
    assert healthcheck.url_for(["aims-agent", "run", "--config", str(cfg)]) == "http://127.0.0.1:9464/healthz"


def test_the_agent_process_is_found_among_the_others() -> None:
    procs = [["/usr/bin/tini", "--", "aims-agent", "run"], ["sh"],
             ["/opt/aims/bin/python", "/opt/aims/bin/aims-agent", "run", "--port", "9500"]]
    assert healthcheck.agent_argv(procs) == procs[2]
    assert healthcheck.agent_argv([["aims-agent", "run", "--port", "1"]]) == ["aims-agent", "run", "--port", "1"]
    assert healthcheck.agent_argv([["python", "-m", "agent.healthcheck"]]) == []


@pytest.fixture
def server_port() -> Iterator[int]:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_the_check_passes_on_the_agents_port_and_fails_elsewhere(server_port: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMS_HEALTHCHECK_URL", raising=False)
    monkeypatch.setattr(healthcheck, "_proc_cmdlines",
                        lambda: iter([["aims-agent", "run", "--port", str(server_port)]]))
    assert healthcheck.main() == 0
    monkeypatch.setattr(healthcheck, "_proc_cmdlines", lambda: iter([["aims-agent", "run", "--port",
                                                                      str(free_port())]]))
    assert healthcheck.main() == 1
