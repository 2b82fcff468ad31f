"""Authentication is safe by default: the agent will not serve open reads beyond loopback, tokens are
long enough, every write endpoint of the OpenAPI schema (new ones included) refuses a missing or
wrong token with 401 and a read-only token with 403, and a malformed Content-Length gets 400."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.runner import Agent
from agent.service import check_bind
from config.errors import ConfigError
from config.loader import load_config, parse_config
from config.model import is_loopback
from tests.conftest import Scenario
from tests.service.conftest import OPERATE, READ, READ_TOKEN

CLI = Path(sys.executable).with_name("aims-agent")
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _write_routes(client: TestClient) -> list[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return [(m.upper(), p.replace("{system_id}", "scoring").replace("{incident_id}", "1"))
            for p, ops in paths.items() for m in ops if m in WRITE_METHODS]


# POST routes that only read (the body is what they read): a token is needed, the read scope suffices
READ_POSTS = {"/api/v1/evidence/verify-pack"}


def test_every_write_endpoint_refuses_missing_wrong_and_read_only_tokens(client: TestClient) -> None:
    routes = _write_routes(client)
    assert {("POST", "/api/v1/systems/scoring/run"), ("POST", "/api/v1/incidents/1/acknowledge"),
            ("POST", "/api/v1/incidents/1/override"), ("POST", "/api/v1/ingest/cloudevents")} <= set(routes)
    wrong = {"Authorization": "Bearer " + "w" * len(READ_TOKEN)}
    for method, path in routes:
        body = {"by": "jane@example.com", "reason": "looked at it", "state": "ok"}
        missing = client.request(method, path, json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", f"{method} {path}"
        assert client.request(method, path, json=body, headers=wrong).status_code == 401, f"{method} {path}"
        if path in READ_POSTS:
            continue  # changes nothing: a read token is enough, but a token is always needed
        read_only = client.request(method, path, json=body, headers=READ)
        assert read_only.status_code == 403, f"{method} {path}: {read_only.status_code} {read_only.text}"
        assert "lacks the" in read_only.json()["detail"]


def test_a_content_length_that_is_not_a_number_gets_400(client: TestClient) -> None:
    r = client.post("/api/v1/systems/scoring/run", content=b"{}",
                    headers={**OPERATE, "Content-Type": "application/json", "Content-Length": "12abc"})
    assert r.status_code == 400
    assert r.json() == {"detail": "Content-Length is not a number of bytes"}


@pytest.mark.parametrize("value", ["short", " " * 20, "fifteen-chars-x"])
def test_a_token_shorter_than_16_characters_is_a_config_error(scenario: Scenario, value: str) -> None:
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "ops", "value": value, "scopes": ["read"]}]
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir)
    text = " | ".join(str(p) for p in err.value.problems)
    assert "agent.tokens.0.value" in text and "at least 16 characters" in text
    if value.strip():
        assert value.strip() not in text, "the value itself is never echoed"


def test_the_loopback_addresses_are_recognised() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "agent.example.com", ""))


def test_a_config_binding_beyond_loopback_without_tokens_is_refused(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["agent"]["server"] = {"host": "0.0.0.0"}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir)
    assert any(p.path == "agent" and "allow_unauthenticated_reads" in p.message for p in err.value.problems)
    cfg["agent"]["server"]["allow_unauthenticated_reads"] = True
    assert parse_config(cfg, base_dir=scenario.dir).agent.server.host == "0.0.0.0"


def test_serving_beyond_loopback_without_tokens_is_refused_whatever_the_config_says(scenario: Scenario) -> None:
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)  # no tokens, 127.0.0.1
    try:
        check_bind(agent, "127.0.0.1")
        with pytest.raises(ConfigError) as err:
            check_bind(agent, "0.0.0.0")  # as --host would ask
        assert err.value.problems[0].path == "agent.server.host"
    finally:
        agent.close()


def test_the_cli_refuses_to_serve_open_reads_and_says_why_on_one_line(scenario: Scenario) -> None:
    run = subprocess.run([str(CLI), "run", "--config", str(scenario.config_path), "--host", "0.0.0.0", "--port",
                          "1"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "allow_unauthenticated_reads" in run.stderr and "agent.server.host" in run.stderr
