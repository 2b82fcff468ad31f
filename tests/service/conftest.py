"""Fixtures of the service tests: an agent that has judged drifted, biased windows (every family has data)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from agent.api import create_app
from agent.runner import Agent
from agent.service import Service
from config.loader import load_config
from tests.conftest import T0, Scenario

READ_TOKEN = "read-token-0123456789abcdef"
OPERATE_TOKEN = "operate-token-0123456789abcdef"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
OPERATE = {"Authorization": f"Bearer {OPERATE_TOKEN}"}
HOURS = 4


def configure(sc: Scenario, *, tokens: bool = True) -> None:
    cfg = sc.config()
    if tokens:
        cfg["agent"]["tokens"] = [{"name": "reader", "value": READ_TOKEN, "scopes": ["read"]},
                                  {"name": "operator", "value": OPERATE_TOKEN, "scopes": ["read", "operate"]}]
    cfg["systems"][0]["checks"]["performance"] = {"enabled": True, "metric": "accuracy", "min": 0.6}
    sc.rewrite(cfg)


def judge_hours(sc: Scenario) -> None:
    """One clean hour, then drift on x1 with a biased score for group B."""
    sc.hour(T0)
    for h in range(1, HOURS):
        sc.hour(T0 + timedelta(hours=h), shift=2.0, bias=1.5)


@pytest.fixture
def populated(scenario: Scenario) -> Iterator[tuple[Agent, Service]]:
    """An agent whose store holds judged windows, decisions, an incident and outbox messages, and whose
    scheduler-less Service has recorded stage timings."""
    configure(scenario)
    judge_hours(scenario)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    service = Service(agent, run_on_start=False)
    agent.clock = lambda: T0 + timedelta(hours=HOURS)
    assert service.run_system("scoring"), "the lock is free: the windows are judged"
    agent.deliver(T0 + timedelta(hours=HOURS))
    yield agent, service
    agent.close()


@pytest.fixture
def client(populated: tuple[Agent, Service]) -> Iterator[TestClient]:
    """The API of the populated agent."""
    agent, service = populated
    with TestClient(create_app(agent, service=service)) as c:
        yield c
