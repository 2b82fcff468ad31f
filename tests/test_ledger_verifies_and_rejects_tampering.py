"""The evidence ledger: every run and transition recorded, the chain verifies, any tampering is named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from agent.evidence_pack import export_pack, verify_pack
from agent.runner import Agent
from config.loader import load_config
from tests.conftest import T0, Scenario


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def _populate(sc: Scenario) -> Agent:
    for h, shift in enumerate([0.0, 2.0, 0.0]):
        sc.hour(T0 + timedelta(hours=h), shift=shift)
    agent = Agent(load_config(sc.config_path), base_dir=sc.dir)
    agent.run_system("scoring", T0 + timedelta(hours=3))
    agent.deliver(T0 + timedelta(hours=3))
    return agent


def test_runs_and_incident_transitions_are_recorded_with_controls(scenario: Scenario) -> None:
    agent = _populate(scenario)
    pack = scenario.dir / "pack"
    export_pack(agent.store, pack)
    records = [json.loads(line) for line in (pack / "records.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("check_run") == 3
    assert {"incident_opened", "incident_resolved", "notification_delivered"} <= set(kinds)
    run = next(r for r in records if r["kind"] == "check_run")
    assert "iso42001:A.6.2.6" in run["controls"]
    assert len(run["payload"]["reference_digest"]) == 64 and len(run["payload"]["config_digest"]) == 64
    delivered = next(r for r in records if r["kind"] == "notification_delivered")
    assert "iso42001:A.8.4" in delivered["controls"]
    agent.close()


def test_intact_ledger_and_pack_verify(scenario: Scenario) -> None:
    agent = _populate(scenario)
    pack = scenario.dir / "pack"
    export_pack(agent.store, pack)
    agent.close()
    assert verify_pack(pack) > 5
    r = _cli("evidence", "verify", str(pack))
    assert r.returncode == 0, r.stderr
    r = _cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 0, r.stderr


def test_altered_record_in_the_state_store_is_named(scenario: Scenario) -> None:
    agent = _populate(scenario)
    agent.close()
    con = sqlite3.connect(scenario.dir / "state.db")
    payload = con.execute("SELECT payload FROM evidence WHERE seq = 4").fetchone()[0]
    con.execute("UPDATE evidence SET payload = ? WHERE seq = 4", (payload.replace("0", "1", 1),))
    con.commit()
    con.close()
    r = _cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 1
    assert "record 4" in r.stderr and "Traceback" not in r.stderr


def test_removed_last_record_is_detected(scenario: Scenario) -> None:
    agent = _populate(scenario)
    agent.close()
    con = sqlite3.connect(scenario.dir / "state.db")
    last = con.execute("SELECT max(seq) FROM evidence").fetchone()[0]
    con.execute("DELETE FROM evidence WHERE seq = ?", (last,))
    con.commit()
    con.close()
    r = _cli("evidence", "verify", str(scenario.config_path))
    assert r.returncode == 1
    assert f"first bad record: {last}" in r.stderr


def _tamper_pack(pack: Path, how: str) -> None:
    path = pack / "records.jsonl"
    lines = path.read_text().splitlines()
    if how == "alter":
        rec = json.loads(lines[2])
        rec["payload"]["tampered"] = True
        lines[2] = json.dumps(rec, sort_keys=True)
    elif how == "drop":
        del lines[3]
    elif how == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    elif how == "insert":
        lines.insert(2, lines[2])
    elif how == "truncate":
        lines = lines[:-2]
    path.write_text("\n".join(lines) + "\n")


def test_tampered_pack_is_rejected_naming_the_record(scenario: Scenario) -> None:
    agent = _populate(scenario)
    for how, expected in [
        ("alter", "record 3"),
        ("drop", "record 4"),
        ("reorder", "record 3"),
        ("insert", "record 4"),
        ("truncate", "ends early"),
    ]:
        pack = scenario.dir / f"pack-{how}"
        export_pack(agent.store, pack)
        _tamper_pack(pack, how)
        r = _cli("evidence", "verify", str(pack))
        assert r.returncode == 1, (how, r.stdout)
        assert expected in r.stderr, (how, r.stderr)
    agent.close()


def test_per_system_pack_withholds_other_records_but_still_verifies(scenario: Scenario) -> None:
    agent = _populate(scenario)
    pack = scenario.dir / "pack-system"
    manifest = export_pack(agent.store, pack, system="other-system")
    agent.close()
    assert manifest["records"] < manifest["chain"]["length"]
    lines = [json.loads(x) for x in (pack / "records.jsonl").read_text().splitlines()]
    assert any(x.get("redacted") for x in lines)
    assert all("payload" not in x for x in lines if x.get("redacted"))
    assert verify_pack(pack) == manifest["chain"]["length"]
