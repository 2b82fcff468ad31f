"""The reference a window was compared with is nameable: check runs record it as path@sha256 (a file, a
folder of files, a frozen snapshot), and `aims-agent reference freeze` freezes a past window as a snapshot,
written atomically and never overwritten, with its digest in a sidecar and in the evidence ledger."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta

from sqlalchemy import select

from agent.runner import Agent
from agent.schema import EvidenceRecord
from config.loader import load_config
from tests.conftest import T0, Scenario
from tests.evidence.conftest import cli, run_hours


def _payloads(agent: Agent, kind: str) -> list[dict[str, object]]:
    with agent.store.session() as s:
        return [dict(r.payload) for r in s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == kind)
                                                   .order_by(EvidenceRecord.seq)).scalars()]


def test_check_runs_name_a_file_reference_by_its_sha256(scenario: Scenario) -> None:
    agent = run_hours(scenario, [0.0])
    runs = _payloads(agent, "check_run")
    agent.close()
    ref = scenario.dir / "reference.parquet"
    assert runs[0]["reference"] == f"file:{ref}@sha256:{hashlib.sha256(ref.read_bytes()).hexdigest()}"

    folder = scenario.dir / "reference"
    folder.mkdir()
    shutil.copy(ref, folder / "part-1.parquet")
    shutil.copy(ref, folder / "part-2.parquet")
    cfg = scenario.config()
    cfg["systems"][0]["reference"] = {"type": "file", "path": "reference"}
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    scenario.hour(T0 + timedelta(hours=1))
    agent.run_system("scoring", T0 + timedelta(hours=2))
    name = str(_payloads(agent, "check_run")[-1]["reference"])
    agent.close()
    digest = hashlib.sha256(ref.read_bytes()).hexdigest()
    listing = f"{digest}  {folder / 'part-1.parquet'}\n{digest}  {folder / 'part-2.parquet'}\n".encode()
    assert name == f"file:{folder}@sha256:{hashlib.sha256(listing).hexdigest()} (2 files)"


def test_a_frozen_window_becomes_the_named_reference(scenario: Scenario) -> None:
    for h in range(3):
        scenario.hour(T0 + timedelta(hours=h))
    out = scenario.dir / "ref" / "first-hour.parquet"
    args = ["reference", "freeze", "--config", str(scenario.config_path), "--system", "scoring",
            "--since", T0.isoformat(), "--until", (T0 + timedelta(hours=1)).isoformat(), "--out", str(out)]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    sidecar = json.loads((out.parent / "first-hour.parquet.json").read_text())
    assert sidecar["digest"] == digest and sidecar["rows"] == 400 and sidecar["system_id"] == "scoring"
    assert f"froze 400 row(s) of scoring to {out} (sha256 {digest})" in r.stdout
    assert f"reference: {{type: snapshot, path: {out}, digest: {digest}}}" in r.stdout
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left behind

    r = cli(*args)  # a frozen snapshot is never overwritten
    assert r.returncode == 2 and "never overwritten" in r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    empty = [*args[:-1], str(scenario.dir / "ref" / "empty.parquet")]
    empty[empty.index("--since") + 1] = (T0 + timedelta(days=9)).isoformat()
    empty[empty.index("--until") + 1] = (T0 + timedelta(days=10)).isoformat()
    r = cli(*empty)
    assert r.returncode == 2 and "no rows" in r.stderr and not (scenario.dir / "ref" / "empty.parquet").exists()
    backwards = [*args[:-1], str(scenario.dir / "ref" / "b.parquet")]
    backwards[backwards.index("--since") + 1] = (T0 + timedelta(hours=2)).isoformat()
    assert cli(*backwards).returncode == 2
    assert cli(*[a if a != T0.isoformat() else "last tuesday" for a in args]).returncode == 2

    cfg = scenario.config()
    cfg["systems"][0]["reference"] = {"type": "snapshot", "path": str(out), "digest": digest}
    cfg["systems"][0]["window"]["start"] = (T0 + timedelta(hours=1)).isoformat()
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    agent.run_system("scoring", T0 + timedelta(hours=3))
    [frozen] = _payloads(agent, "reference_frozen")
    runs = _payloads(agent, "check_run")
    with agent.store.session() as s:
        record = s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "reference_frozen")).scalar_one()
    agent.close()
    assert frozen["sha256"] == digest and frozen["rows"] == 400
    assert frozen["window"] == {"start": "2026-01-05T00:00:00.000000Z", "end": "2026-01-05T01:00:00.000000Z"}
    assert {"iso42001:A.4.3", "iso42001:A.7.5"} <= set(record.controls) and record.system_id == "scoring"
    assert len(runs) == 2 and all(r["reference"] == f"snapshot:{out}@sha256:{digest}" for r in runs)
    assert frozen["name"] == runs[0]["reference"]
