"""KServe's inference logger cannot send an Authorization header: `agent.server.ingest_without_token_from`
lets the ingest routes, and only them, accept token-less events from the listed networks.

Through the agent's real app (``create_app``, the test client setting the client address) and over a real
socket served with the agent's own uvicorn options: the address judged is the TCP peer, never
X-Forwarded-For. Default (nothing listed): a token is always required. Bad entries are configuration
problems, every one reported with its path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent.api import create_app
from agent.runner import Agent
from agent.schema import InferenceEvent
from config.errors import ConfigError
from config.loader import load_config, parse_config
from tests.conftest import T0, Scenario, serving
from tests.connectors.test_kserve_logger_events_over_a_real_socket import kserve_event

INGEST = "ingest-token-for-the-logger"
OPERATOR = "operate-token-of-a-person"
EVENT = "/api/v1/ingest/scoring/cloudevents"
SHARED = "/api/v1/ingest/cloudevents"


def _agent(scenario: Scenario, networks: list[str] | None) -> Agent:
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest"]},
                              {"name": "ops", "value": OPERATOR, "scopes": ["read", "operate"]}]
    if networks is not None:
        cfg["agent"]["server"] = {"ingest_without_token_from": networks}
    scenario.rewrite(cfg)
    return Agent(load_config(scenario.config_path), base_dir=scenario.dir)


@pytest.fixture
def agent(scenario: Scenario) -> Iterator[Agent]:
    a = _agent(scenario, ["10.1.0.0/16", "127.0.0.1", "fd00:42::/64"])
    yield a
    a.close()


def _event(n: int) -> tuple[dict[str, str], bytes]:
    return kserve_event("request", f"ev-{n}", {"instances": [{"x1": 0.1 * n, "x2": 1.0, "colour": "red",
                                                               "group": "A"}]}, T0 + timedelta(minutes=n))


def _stored(agent: Agent) -> set[str]:
    with agent.store.session() as s:
        return set(s.execute(select(InferenceEvent.event_id)).scalars())


def _from(agent: Agent, host: str) -> TestClient:
    return TestClient(create_app(agent), client=(host, 50000))


def test_a_tokenless_event_is_stored_only_from_a_listed_network(agent: Agent) -> None:
    for n, host in enumerate(["10.1.2.3", "10.1.255.254", "127.0.0.1", "fd00:42::7", "::ffff:10.1.9.9"]):
        headers, body = _event(n)
        r = _from(agent, host).post(EVENT if n % 2 else SHARED, headers=headers, content=body)
        assert r.status_code == 202, (host, r.text)
        assert r.json()["stored"] is True
    assert _stored(agent) == {f"ev-{n}" for n in range(5)}

    for n, host in enumerate(["10.2.0.1", "192.0.2.7", "127.0.0.2", "fd00:43::1", "::1", "testclient"], start=10):
        headers, body = _event(n)
        r = _from(agent, host).post(EVENT, headers=headers, content=body)
        assert r.status_code == 401, (host, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    # a forwarded-for header naming a listed address changes nothing: the peer is judged
    headers, body = _event(20)
    r = _from(agent, "192.0.2.7").post(EVENT, headers={**headers, "X-Forwarded-For": "10.1.2.3",
                                                       "Forwarded": "for=10.1.2.3"}, content=body)
    assert r.status_code == 401
    assert _stored(agent) == {f"ev-{n}" for n in range(5)}, "nothing refused was stored"


def test_a_token_still_works_from_anywhere_and_a_bad_one_is_refused_even_from_a_listed_network(agent: Agent) -> None:
    headers, body = _event(1)
    ok = _from(agent, "192.0.2.7").post(EVENT, headers={**headers, "Authorization": f"Bearer {INGEST}"},
                                        content=body)
    assert ok.status_code == 202
    headers, body = _event(2)
    bad = _from(agent, "10.1.2.3").post(EVENT, headers={**headers, "Authorization": "Bearer not-a-token-at-all"},
                                        content=body)
    assert bad.status_code == 401 and bad.json()["detail"] == "invalid token"
    wrong_scope = _from(agent, "10.1.2.3").post(EVENT, headers={**headers, "Authorization": f"Bearer {OPERATOR}"},
                                                content=body)
    assert wrong_scope.status_code == 403
    assert _stored(agent) == {"ev-1"}


def test_no_other_route_opens_to_the_listed_networks(agent: Agent) -> None:
    app = create_app(agent)
    writes = [(r.path, m) for r in app.routes if isinstance(r, APIRoute)
              for m in sorted(r.methods - {"GET", "HEAD"}) if not r.path.startswith("/api/v1/ingest/")]
    assert {p for p, _ in writes} >= {"/api/v1/systems/{system_id}/run", "/api/v1/incidents/{incident_id}/acknowledge",
                                      "/api/v1/incidents/{incident_id}/override", "/api/v1/outbox/{message_id}/requeue",
                                      "/api/v1/outbox/{message_id}/discard", "/api/v1/evidence/verify-pack"}
    client = TestClient(app, client=("10.1.2.3", 50000))
    for path, method in writes:
        url = path.replace("{system_id}", "scoring").replace("{incident_id}", "1").replace("{message_id}", "1")
        r = client.request(method, url, json={"by": "someone", "reason": "a reason long enough to pass"})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        # and with the operator's token the same request is authenticated (whatever it then answers)
        authed = client.request(method, url, json={}, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert authed.status_code != 401, (method, path)
    for path in ("/api/v1/systems", "/api/v1/evidence", "/api/v1/incidents"):
        assert client.get(path).status_code == 401, path  # reads still need a token once tokens exist


def test_by_default_the_ingest_needs_a_token_from_everywhere(scenario: Scenario) -> None:
    agent = _agent(scenario, None)
    try:
        assert agent.cfg.agent.server.ingest_without_token_from == []
        for n, host in enumerate(["127.0.0.1", "10.1.2.3", "::1"]):
            headers, body = _event(n)
            assert _from(agent, host).post(EVENT, headers=headers, content=body).status_code == 401, host
        assert _stored(agent) == set()
    finally:
        agent.close()


def test_bad_networks_are_configuration_problems_each_with_its_path(scenario: Scenario) -> None:
    cfg = scenario.config()
    cfg["agent"]["server"] = {"port": 70000, "ingest_without_token_from": [
        "127.0.0.1/32", "10.0.0.0/33", "kserve-logger", "10.1.2.3/8", "0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104"]}
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, base_dir=scenario.dir)
    problems = {p.path: str(p) for p in err.value.problems}
    base = "agent.server.ingest_without_token_from"
    assert "agent.server.port" in problems, "every problem at once"
    assert f"{base}.0" not in problems
    assert "is not an IP address or CIDR network" in problems[f"{base}.1"]
    assert "'kserve-logger' is not an IP address" in problems[f"{base}.2"]
    assert "host bits set: write the network 10.0.0.0/8, or 10.1.2.3/32" in problems[f"{base}.3"]
    for i, text in ((4, "0.0.0.0/0"), (5, "::/0")):
        assert f"'{text}' is every address: ingest without a token from anywhere is refused" in problems[f"{base}.{i}"]
    assert "write it as IPv4" in problems[f"{base}.6"]
    cfg["agent"]["server"] = {"ingest_without_token_from": ["127.0.0.1", " 10.42.0.0/16 ", "fd00::/8"]}
    assert parse_config(cfg, base_dir=scenario.dir).agent.server.ingest_without_token_from == [
        "127.0.0.1/32", "10.42.0.0/16", "fd00::/8"]


def _served(agent: Agent) -> AbstractContextManager[str]:
    """The app served over loopback TCP the way `aims-agent run` serves it (the agent's uvicorn options)."""
    return serving(create_app(agent))


def test_a_logger_in_the_same_pod_posts_to_loopback_without_a_token(scenario: Scenario) -> None:
    agent = _agent(scenario, ["127.0.0.1/32"])
    try:
        with _served(agent) as base, httpx.Client(timeout=10) as client:
            for n, half in enumerate(("request", "response")):
                payload = {"instances": [[0.1, 1.0, "red", "A"]]} if half == "request" else {"predictions": [0.7]}
                headers, body = kserve_event(half, "pod-1", payload, T0 + timedelta(minutes=n))
                r = client.post(f"{base}{SHARED}", headers=headers, content=body)
                assert r.status_code == 202, r.text
            assert client.post(f"{base}/api/v1/systems/scoring/run").status_code == 401
        with agent.store.session() as s:
            assert s.execute(select(func.count()).select_from(InferenceEvent)).scalar_one() == 2
    finally:
        agent.close()


def test_over_a_real_socket_x_forwarded_for_cannot_claim_a_listed_network(scenario: Scenario) -> None:
    # uvicorn's default trusts X-Forwarded-For from 127.0.0.1: the agent serves with it off
    agent = _agent(scenario, ["10.9.9.0/24"])
    try:
        with _served(agent) as base, httpx.Client(timeout=10) as client:
            headers, body = _event(1)
            r = client.post(f"{base}{EVENT}", headers={**headers, "X-Forwarded-For": "10.9.9.9",
                                                       "X-Forwarded-Proto": "https"}, content=body)
            assert r.status_code == 401, r.text
            ok = client.post(f"{base}{EVENT}", headers={**headers, "Authorization": f"Bearer {INGEST}"},
                             content=body)
            assert ok.status_code == 202
        assert _stored(agent) == {"ev-1"}
    finally:
        agent.close()
