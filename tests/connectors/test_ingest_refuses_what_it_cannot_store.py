"""The ingest endpoint answers 4xx for an event it cannot store, and 2xx only for one that is on disk.

An attribute longer than its column used to reach the database, fail there (PostgreSQL, MariaDB) and
be answered 503 "store unavailable", which a retrying sender (a Knative broker, Seldon) repeats for
ever. The body limit is ``agent.server.max_event_bytes``; SQLite commits with ``synchronous=FULL``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from agent.api import create_app
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import Scenario
from tests.connectors.test_ingest_cloudevents import INGEST, _count, kserve, seldon

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PATH = "/api/v1/ingest/scoring/cloudevents"


def _agent(scenario: Scenario, state_url: str | None = None, **server: Any) -> Agent:
    cfg = scenario.config()
    if state_url:
        cfg["agent"]["state_url"] = state_url
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest", "operate", "read"]}]
    cfg["agent"]["server"] = server
    scenario.rewrite(cfg)
    return Agent(load_config(scenario.config_path), base_dir=scenario.dir)


@pytest.fixture(params=["sqlite", "postgresql"])
def agent(request: pytest.FixtureRequest, scenario: Scenario) -> Iterator[Agent]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    a = _agent(scenario, url)
    yield a
    a.close()


def _client(agent: Agent) -> TestClient:
    return TestClient(create_app(agent), headers={"Authorization": f"Bearer {INGEST}"})


@pytest.mark.parametrize(("header", "length", "limit"), [
    ("ce-namespace", 201, 200), ("ce-inferenceservicename", 250, 200), ("ce-component", 101, 100),
    ("ce-source", 301, 300), ("ce-id", 201, 200),
])
def test_an_attribute_longer_than_its_column_is_a_400_with_the_reason(agent: Agent, header: str, length: int,
                                                                       limit: int) -> None:
    headers, body = kserve("request", "long-1", {"instances": [[1.0, "red"]]}, T)
    headers[header] = "n" * length
    r = _client(agent).post(PATH, headers=headers, content=body)
    assert r.status_code == 400, r.text
    assert f"{header} is {length} characters long; at most {limit} are stored" in r.json()["detail"]
    assert _count(agent) == 0
    headers[header] = "n" * limit  # exactly the column's size is stored
    assert _client(agent).post(PATH, headers=headers, content=body).status_code == 202


def test_a_feedback_naming_a_too_long_request_id_is_a_400(agent: Agent) -> None:
    msg = seldon("feedback", "fb-1", {"truth": {"data": {"ndarray": [[1]]}}}, T, requestid="r" * 300)
    r = _client(agent).post(PATH, headers=msg[0], content=msg[1])
    assert r.status_code == 400 and "ce-requestid is 300 characters long" in r.json()["detail"]


def test_a_value_the_database_refuses_anyway_is_a_400_not_an_outage(scenario: Scenario, pg_url: str) -> None:
    agent = _agent(scenario, pg_url)
    try:
        with agent.store.engine.begin() as conn:  # a store whose column is narrower than the agent expects
            conn.execute(text("ALTER TABLE inference_events ALTER COLUMN namespace TYPE varchar(10)"))
        headers, body = kserve("request", "narrow-1", {"instances": [[1.0, "red"]]}, T)
        headers["ce-namespace"] = "production-eu-west"
        r = _client(agent).post(PATH, headers=headers, content=body)
        assert r.status_code == 400 and "does not fit the state store" in r.json()["detail"]
    finally:
        agent.close()


def _big(size: int) -> bytes:
    body = json.dumps({"instances": [[0.5, "red"]] * (size // 14)}).encode()
    assert abs(len(body) - size) < 64
    return body


def test_the_body_limit_is_configurable_and_only_for_ingest(scenario: Scenario) -> None:
    headers, _ = kserve("request", "big-1", {}, T)
    default = _agent(scenario)
    try:
        r = _client(default).post(PATH, headers=headers, content=_big(1_500_000))
        assert r.status_code == 413 and "1048576" in r.json()["detail"]
    finally:
        default.close()
    roomy = _agent(scenario, max_event_bytes=2 * 1024 * 1024)
    try:
        client = _client(roomy)
        assert client.post(PATH, headers=headers, content=_big(1_500_000)).status_code == 202
        headers["ce-id"] = "big-2"
        assert client.post(PATH, headers=headers, content=_big(2_500_000)).status_code == 413
        # other routes keep the API's own 1 MiB limit
        r = client.post("/api/v1/systems/scoring/run", content=_big(1_500_000),
                        headers={"content-type": "application/json"})
        assert r.status_code == 413
    finally:
        roomy.close()


def test_the_limit_cannot_exceed_what_mariadb_stores(scenario: Scenario) -> None:
    from config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max_event_bytes.*16777215"):
        _agent(scenario, max_event_bytes=32 * 1024 * 1024)


def test_sqlite_commits_are_on_disk_before_the_answer(scenario: Scenario) -> None:
    agent = _agent(scenario)
    try:
        with agent.store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        agent.close()
