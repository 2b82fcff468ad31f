"""The pack's HTML report renders in a real browser (Debian's chromium, headless): its script runs
without errors and marks the page, it draws drift, fairness and performance charts and the incident
timelines, and it loads nothing from elsewhere. A page whose script fails is shown to fail the same check."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from agent.evidence_pack import export_pack
from tests.conftest import Scenario
from tests.evidence.conftest import run_hours

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "chromium is required: tests/services/install_chromium.sh installs it"
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()], capture_output=True,
                          text=True, timeout=120)


def _script_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Uncaught" in line or ("CONSOLE" in line and "ERROR" in line)]


def test_report_renders_with_charts_and_timelines_in_chromium(scenario: Scenario, tmp_path: Path) -> None:
    cfg = yaml.safe_load(scenario.config_path.read_text())
    cfg["systems"][0]["checks"]["performance"] = {"enabled": True, "metric": "accuracy", "min": 0.5,
                                                  "min_labels": 50}
    scenario.config_path.write_text(yaml.safe_dump(cfg))
    agent = run_hours(scenario, [0.0, 2.0, 2.0, 0.0, 0.0])
    export_pack(agent.store, tmp_path / "pack")
    agent.close()
    page = tmp_path / "pack" / "report.html"
    html = page.read_text()
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), "the report must not load anything"

    r = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not _script_errors(r.stderr), _script_errors(r.stderr)
    status = re.search(r'<p id="status" data-rendered="true">report rendered: (\d+) charts</p>', r.stdout)
    assert status, r.stdout[-3000:]
    assert int(status.group(1)) >= 5  # drift share, per-feature drift, fairness, performance, incidents
    for heading in ("Dataset drift", "Per-feature drift scores", "Fairness gaps", "Performance", "Incidents"):
        assert heading in r.stdout
    assert "opened" in r.stdout and "notified" in r.stdout and "resolved" in r.stdout
    assert "A.6.2.6" in r.stdout and "AI policy" in r.stdout  # evidenced, and Annex A without evidence

    shot = tmp_path / "report.png"
    r = _chromium(page, tmp_path / "profile2", "--hide-scrollbars", "--window-size=1200,1800", f"--screenshot={shot}")
    assert r.returncode == 0 and shot.stat().st_size > 20_000


def test_a_failing_script_is_caught_by_the_same_check(scenario: Scenario, tmp_path: Path) -> None:
    agent = run_hours(scenario, [0.0, 2.0])
    export_pack(agent.store, tmp_path / "pack")
    agent.close()
    page = tmp_path / "pack" / "report.html"
    page.write_text(page.read_text().replace("var box =", "undefinedFunction(); var box =", 1))
    r = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert 'data-rendered="true"' not in r.stdout
    assert _script_errors(r.stderr)
