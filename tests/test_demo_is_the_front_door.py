"""`aims-agent demo`, exactly as the README says (no arguments, no server), shows the whole data path in
well under a minute; `aims-agent demo --serve` then serves /metrics and /healthz until stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from agent.evidence_pack import verify_pack
from tests.conftest import free_port

CLI = Path(sys.executable).parent / "aims-agent"
ENV = {"COLUMNS": "120", "PATH": f"{CLI.parent}:/usr/bin:/bin"}


def test_demo_opens_and_resolves_incidents_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = subprocess.run(["aims-agent", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert elapsed < 60, f"the demo took {elapsed:.0f}s (the README promises under a minute)"
    out = tmp_path / "aims-demo"
    tickets = [json.loads(p.read_text()) for p in (out / "tickets").glob("*.json")]
    by_kind = {t["kind"]: t for t in tickets}
    assert by_kind["drift"]["status"] == "open"
    assert by_kind["bias"]["status"] == "resolved"
    assert by_kind["bias"]["content"]["eu_ai_act"]["assessment_required"] is True
    assert verify_pack(out / "evidence-pack") > 20
    for hint in ("Tickets", "Evidence", "--serve", "EU AI Act serious-incident assessment"):
        assert hint in r.stdout, hint


def test_demo_serve_exposes_metrics_and_health_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(["aims-agent", "demo", "--serve", str(port)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, proc.poll()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert 'aims_dataset_drift_share{system="credit-scoring"}' in metrics.text
        assert 'aims_incidents_open{' in metrics.text
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as the demo tells the user
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert f"http://127.0.0.1:{port}/metrics" in stdout
    assert "Traceback" not in stderr
