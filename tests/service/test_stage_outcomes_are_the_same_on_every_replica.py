"""Per-stage outcomes live in the shared state store: after a replica's failed attempt another replica's
success is what EVERY replica reports, so AimsCheckStageFailing does not fire on a stale 0."""

from __future__ import annotations

import re
from datetime import timedelta

from agent.runner import Agent
from agent.service import Service
from config.loader import parse_config
from tests.conftest import T0, Scenario


def _stage(service: Service, stage: str) -> str:
    text = service.exposition.render().decode()
    m = re.search(rf'^aims_check_stage_success{{stage="{stage}",system="scoring"}} (\S+)$', text, flags=re.M)
    assert m, text
    return m.group(1)


def _body(service: Service) -> str:
    # the time the build took is the one line that is each replica's own
    return re.sub(r"^aims_scrape_duration_seconds .*$", "", service.exposition.render().decode(), flags=re.M)


def test_a_replica_that_failed_reports_the_success_of_the_one_that_took_over(scenario: Scenario) -> None:
    for h in range(2):
        scenario.hour(T0 + timedelta(hours=h))
    good = scenario.config()
    broken = scenario.config()
    # replica A lost its view of the predictions (an unmounted volume, a revoked credential)
    broken["systems"][0]["source"] = {"type": "file", "path": str(scenario.dir / "missing.parquet")}
    a = Agent(parse_config(broken, base_dir=scenario.dir), base_dir=scenario.dir)
    b = Agent(parse_config(good, base_dir=scenario.dir), base_dir=scenario.dir)
    try:
        now = T0 + timedelta(hours=2)
        a.clock = b.clock = lambda: now
        replica_a, replica_b = Service(a, run_on_start=False), Service(b, run_on_start=False)
        failed = replica_a.run_system("scoring")
        assert failed and failed[0].status == "failed"
        assert _stage(replica_a, "read") == "0.0" and _stage(replica_b, "read") == "0.0"
        judged = replica_b.run_system("scoring")
        assert judged and all(o.status != "failed" for o in judged)
        for replica in (replica_a, replica_b):
            assert _stage(replica, "read") == "1.0"
            assert _stage(replica, "metrics") == "1.0" and _stage(replica, "commit") == "1.0"
        assert _body(replica_a) == _body(replica_b), "every replica serves the same numbers"
    finally:
        a.close()
        b.close()
