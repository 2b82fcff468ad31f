"""/metrics is rebuilt when checks end, once for checks ending together. While checks commit (or a build
runs) a scrape serves the last body for at most ``MAX_STALE_S`` instead of building one itself; with no
rebuild coming a scrape is always current."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from agent.exposition import MAX_STALE_S, Exposition, StateCollector
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


def test_checks_ending_together_cost_one_build(scenario: Scenario) -> None:
    for h in range(3):
        scenario.hour(T0 + timedelta(hours=h))
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        expo = Exposition(agent.store, StateCollector(agent.store))
        expo.render()
        assert expo.builds == 1
        # three systems' checks at once (here: three windows judged under overlapping `changing()`)
        with expo.changing():
            with expo.changing():
                agent.clock = lambda: T0 + timedelta(hours=1, minutes=5)
                agent.run_system("scoring")
            assert expo.builds == 1, "another check is still committing: no build yet"
            with expo.changing():
                agent.clock = lambda: T0 + timedelta(hours=3, minutes=5)
                agent.run_system("scoring")
            assert expo.builds == 1
        assert expo.builds == 2, "one build when the last check ended"
        with expo.changing():
            pass
        assert expo.builds == 2, "work that changed nothing costs no build"
        assert b'aims_window_rows{system="scoring"} 400.0' in expo.render() and expo.builds == 2
    finally:
        agent.close()


def test_the_scheduler_refreshes_metrics_after_checks_and_scrapes_stay_current(scenario: Scenario) -> None:
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h), shift=2.0)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.clock = lambda: T0 + timedelta(hours=2)
    service = Service(agent, run_on_start=True)
    try:
        service.start()
        assert service.exposition.builds >= 1, "the first body is built at start"
        assert _wait(lambda: service.exposition.builds >= 2), "the checks' commit is followed by a build"
        built = service.exposition.builds
        body = service.exposition.render()
        assert b'aims_window_rows{system="scoring"} 400.0' in body
        assert service.exposition.builds == built, "the scrape after the build is served from it"
    finally:
        service.stop()
        agent.close()


def test_while_checks_commit_a_scrape_serves_the_last_body_for_a_bounded_time(scenario: Scenario) -> None:
    assert MAX_STALE_S == 10.0, "docs/deployment.md and docs/performance.md say ten seconds"
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h), shift=2.0 * h)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.clock = lambda: T0 + timedelta(hours=1, minutes=5)
    expo = Exposition(agent.store, StateCollector(agent.store))
    try:
        before = expo.render()
        assert b'aims_window_rows{system="scoring"}' not in before and expo.builds == 1
        with expo.changing():
            assert [o.status for o in agent.run_system("scoring")] == ["ok"]
            assert expo.render() is before, "a rebuild follows the checks: the scrape does not wait for one"
            assert expo.builds == 1
            expo.max_stale_s = 0.2
            time.sleep(0.25)
            current = expo.render()  # the bound passed: this scrape builds
            assert b'aims_window_rows{system="scoring"} 400.0' in current and expo.builds == 2
        # the rebuild when the work ends finds nothing new to build
        assert expo.builds == 2 and expo.render() is current
        with expo.changing():
            agent.clock = lambda: T0 + timedelta(hours=2, minutes=5)
            assert [o.status for o in agent.run_system("scoring")] == ["breach"]
            assert expo.render() is current and expo.builds == 2
        # the work is over: its rebuild ran before it returned
        assert expo.builds == 3 and expo.render() is not current
        current = expo.render()
        # with no rebuild coming, a scrape after a change is current at once
        agent.clock = lambda: T0 + timedelta(hours=3, minutes=5)
        scenario.hour(T0 + timedelta(hours=2))
        assert [o.status for o in agent.run_system("scoring")] == ["ok"]
        after = expo.render()
        assert after != current and expo.builds == 4
    finally:
        agent.close()
