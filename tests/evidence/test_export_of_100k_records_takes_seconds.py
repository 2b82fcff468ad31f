"""A period of 100k records (about 220 MB of JSON) exports in seconds and the pack verifies.

Times are measured as CPU time of this process (what the export costs, whatever else the machine is
doing) and printed with the wall time; run with ``-s`` to see them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.evidence_pack import export_pack, verify_pack
from agent.store import Store
from tests.conftest import T0
from tests.evidence.conftest import bulk_ledger

N = 100_000


@pytest.mark.slow
def test_period_of_100k_records_exports_in_seconds(store: Store, tmp_path: Path) -> None:
    bulk_ledger(store, N)
    cpu, wall = time.process_time(), time.perf_counter()
    manifest = export_pack(store, tmp_path / "pack", since=T0.isoformat())
    export_cpu, export_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    assert verify_pack(tmp_path / "pack") == N
    verify_cpu, verify_wall = time.process_time() - cpu, time.perf_counter() - wall
    size_mb = (tmp_path / "pack" / "records.jsonl").stat().st_size / 1e6
    print(f"\nexport of {N} records ({size_mb:.0f} MB): {export_cpu:.1f} s CPU, {export_wall:.1f} s wall; "
          f"verify: {verify_cpu:.1f} s CPU, {verify_wall:.1f} s wall")
    assert manifest["records"] == N and manifest["chain"]["length"] == N
    assert export_cpu < 15.0, f"export took {export_cpu:.1f} s of CPU"
    report = (tmp_path / "pack" / "report.html").read_text()
    assert report.count("<polyline") >= 8 and report.count("<details") == N // 500  # one timeline per incident
    assert len(report) < 2_000_000  # thinned charts: the page stays small however long the period
    rows = (tmp_path / "pack" / "controls.csv").read_text().splitlines()
    run = next(r for r in rows if r.startswith("iso42001,A.6.2.6,"))
    # every record but the 200 notifications supports A.6.2.6
    assert run.split(",")[3] == str(N - N // 500)
    assert json.loads((tmp_path / "pack" / "manifest.json").read_text())["files"]["report.html"]
