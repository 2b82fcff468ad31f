"""`aims-agent demo` runs with no arguments and no server, and shows the whole data path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.evidence_pack import verify_pack


def test_demo_opens_and_resolves_incidents_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "agent.cli", "demo", "--out", str(out), "--fast"],
                       capture_output=True, text=True, timeout=300, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert elapsed < 60
    tickets = [json.loads(p.read_text()) for p in (out / "tickets").glob("*.json")]
    by_kind = {t["kind"]: t for t in tickets}
    assert by_kind["drift"]["status"] == "open"
    assert by_kind["bias"]["status"] == "resolved"
    assert by_kind["bias"]["content"]["eu_ai_act"]["assessment_required"] is True
    assert verify_pack(out / "evidence-pack") > 20
    for hint in ("Tickets", "Evidence", "--serve", "EU AI Act serious-incident assessment"):
        assert hint in r.stdout, hint
