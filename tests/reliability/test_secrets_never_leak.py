"""Secrets (database passwords, API tokens) never appear in logs, evidence, tickets, exports or /metrics."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.evidence_pack import export_pack
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario

DB_PASSWORD = "Pw-7f3c9a1e-db-secret"
TOKEN = "tok-5b2d8e77-api-secret"


def _files_contain(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.integration
def test_secrets_stay_out_of_logs_evidence_tickets_and_exports(scenario: Scenario, tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(TOKEN)
    for h, shift in enumerate([0.0, 2.0]):
        scenario.hour(T0 + timedelta(hours=h), shift=shift)
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "ops", "value": f"${{file:{secret_file}}}", "scopes": ["read", "operate"]}]
    # a reachable reference, an unreachable source whose URL carries a password: errors must not print it
    cfg["systems"][0]["source"] = {"type": "sql", "table": "predictions", "connect_timeout_s": 2,
                                   "url": f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:1/none"}
    scenario.rewrite(cfg)
    r = subprocess.run([sys.executable, "-m", "agent.cli", "--debug", "check", "--config", str(scenario.config_path),
                        "--now", (T0 + timedelta(hours=2)).isoformat()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, "the unreachable source fails the check"
    assert DB_PASSWORD not in r.stderr + r.stdout and TOKEN not in r.stderr + r.stdout
    assert "***" in r.stderr, "the URL is shown with its password masked"

    # now a working source, so incidents, tickets, evidence and metrics exist
    cfg["systems"][0]["source"] = {"type": "sql", "url": f"sqlite:///{scenario.db}", "table": "predictions"}
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.record_config_loaded(str(scenario.config_path))
    agent.run_system("scoring", T0 + timedelta(hours=2))
    agent.deliver(T0 + timedelta(hours=2))
    export_pack(agent.store, scenario.dir / "pack")
    from prometheus_client import CollectorRegistry, generate_latest

    from agent.exposition import StateCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(agent.store))
    exposition = generate_latest(reg).decode()
    agent.close()
    assert TOKEN not in exposition and DB_PASSWORD not in exposition
    leaks = _files_contain(scenario.dir, TOKEN) + _files_contain(scenario.dir, DB_PASSWORD)
    leaks = [p for p in leaks if p.name != "config.yaml" and p != secret_file]
    assert leaks == [], f"secrets found in {leaks}"
    assert list((scenario.dir / "tickets").glob("*.md")), "tickets were written (and checked)"
