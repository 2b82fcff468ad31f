"""/metrics is rebuilt two seconds (``REFRESH_SETTLE_S``) after checks commit, once for a burst of
checks, and a scrape in between never serves a stale body."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from agent.exposition import REFRESH_SETTLE_S, Exposition, StateCollector
from agent.runner import Agent
from agent.service import Service
from config.loader import load_config
from tests.conftest import T0, Scenario


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_burst_of_refresh_requests_costs_one_build(scenario: Scenario) -> None:
    assert REFRESH_SETTLE_S == 2.0, "docs/deployment.md and docs/performance.md say two seconds"
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        expo = Exposition(agent.store, StateCollector(agent.store), settle_s=0.3)
        for _ in range(20):
            expo.refresh_soon()
        assert expo.builds == 0, "nothing is built before the checks have settled"
        assert _wait(lambda: expo.builds == 1)
        time.sleep(0.5)
        assert expo.builds == 1
        expo.refresh_soon()
        expo.cancel()
        time.sleep(0.5)
        assert expo.builds == 1, "a cancelled refresh (shutdown) does not run"
    finally:
        agent.close()


def test_the_scheduler_refreshes_metrics_after_checks_and_scrapes_stay_current(scenario: Scenario) -> None:
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h), shift=2.0)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.clock = lambda: T0 + timedelta(hours=2)
    service = Service(agent, run_on_start=True)
    service.exposition.settle_s = 0.2
    try:
        service.start()
        assert _wait(lambda: service.exposition.builds >= 1), "the checks' commit is followed by a build"
        built = service.exposition.builds
        body = service.exposition.render()
        assert b'aims_window_rows{system="scoring"} 400.0' in body
        assert service.exposition.builds == built, "the scrape after the build is served from it"
    finally:
        service.stop()
        agent.close()
