"""Three ``aims-agent run`` processes share one PostgreSQL state store: every window is judged exactly
once (advisory lock per system), and when the busiest replica is SIGKILLed the others carry on without
a gap; the evidence ledger still verifies."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Scenario, free_port, make_rows

SYSTEMS = ("scoring-a", "scoring-b", "scoring-c")
WINDOW_S = 2
JUDGED = re.compile(r"system=(\S+) window=(\S+)\.\.(\S+) status=(\S+) rows=(\d+)")
CLI = Path(sys.executable).with_name("aims-agent")


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    stream: IO[bytes] = field(repr=False)

    def judged(self) -> list[tuple[str, str, str]]:
        """(system, window start, status) of every window this replica logged as judged."""
        return [(m.group(1), m.group(2), m.group(4)) for m in JUDGED.finditer(self.log.read_text(errors="replace"))]


def _config(sc: Scenario, pg_url: str, now: datetime) -> None:
    live = sc.dir / "live.parquet"
    make_rows(np.random.default_rng(11), 9000, now - timedelta(seconds=10), span=timedelta(seconds=90),
              shift=1.0).to_parquet(live, index=False)
    cfg = sc.config()
    cfg["agent"]["state_url"] = pg_url
    base = cfg["systems"][0]
    start = now - timedelta(seconds=now.timestamp() % WINDOW_S)
    cfg["systems"] = []
    for sid in SYSTEMS:
        s = {**base, "id": sid, "source": {"type": "file", "path": str(live)},
             "window": {"size": f"{WINDOW_S}s", "min_rows": 20, "start": start.isoformat()},
             "schedule": {"every": "1s"}}
        cfg["systems"].append(s)
    sc.rewrite(cfg)


def _start(sc: Scenario, name: str) -> Replica:
    port = free_port()
    log = sc.dir / f"{name}.log"
    stream = log.open("wb")
    proc = subprocess.Popen([str(CLI), "run", "--config", str(sc.config_path), "--port", str(port)],
                            stdout=stream, stderr=subprocess.STDOUT, cwd=sc.dir)
    return Replica(name, port, proc, log, stream)


def _wait_ready(r: Replica, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert r.proc.poll() is None, f"{r.name} exited: {r.log.read_text()[-2000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{r.port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{r.name} did not become ready: {r.log.read_text()[-2000:]}")


def _windows(pg_url: str) -> dict[str, list[datetime]]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT system_id, window_start FROM check_runs ORDER BY window_start")).all()
    finally:
        engine.dispose()
    out: dict[str, list[datetime]] = {sid: [] for sid in SYSTEMS}
    for sid, start in rows:
        out[sid].append(start)
    return out


def _wait_for(pg_url: str, per_system: int, deadline: float) -> dict[str, list[datetime]]:
    while time.monotonic() < deadline:
        w = _windows(pg_url)
        if all(len(v) >= per_system for v in w.values()):
            return w
        time.sleep(0.5)
    raise AssertionError(f"windows judged so far: { {k: len(v) for k, v in _windows(pg_url).items()} }")


@pytest.mark.integration
@pytest.mark.slow
def test_replicas_judge_each_window_once_and_take_over_from_a_killed_one(scenario: Scenario, pg_url: str) -> None:
    _config(scenario, pg_url, datetime.now(UTC))
    # the first replica creates the schema and the ledger of the empty database; the two others join
    # a running deployment (simultaneous first appends to an empty ledger are a separate concern)
    replicas = [_start(scenario, "replica-0")]
    try:
        deadline = time.monotonic() + 90
        _wait_ready(replicas[0], deadline)
        replicas += [_start(scenario, f"replica-{i}") for i in (1, 2)]
        for r in replicas[1:]:
            _wait_ready(r, deadline)
        _wait_for(pg_url, 3, time.monotonic() + 60)
        busiest = max(replicas, key=lambda r: len(r.judged()))
        assert busiest.judged(), "some replica has judged windows"
        busiest.proc.send_signal(signal.SIGKILL)
        busiest.proc.wait(timeout=10)
        killed_at = len(busiest.judged())
        before = {sid: len(v) for sid, v in _windows(pg_url).items()}
        _wait_for(pg_url, max(before.values()) + 3, time.monotonic() + 60)
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        for r in replicas:
            try:
                r.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait(timeout=10)
            r.stream.close()

    windows = _windows(pg_url)
    for sid, starts in windows.items():
        steps = {(b - a).total_seconds() for a, b in itertools.pairwise(starts)}
        assert steps == {float(WINDOW_S)}, f"{sid}: windows judged without a gap and never twice ({starts})"

    judged = [(r.name, sid, start, status) for r in replicas for sid, start, status in r.judged()]
    assert not [j for j in judged if j[3] == "skipped"], "no replica lost a window to the unique-constraint backstop"
    logged = sorted((sid, start) for _, sid, start, _ in judged)
    assert len(logged) == len(set(logged)), "no window was judged by two replicas"
    in_store = sorted((sid, s.isoformat()) for sid, starts in windows.items() for s in starts)
    assert set(logged) <= set(in_store)
    # a replica logs a system's windows once its catch-up batch is done, so the killed one may have
    # committed windows it never logged: those lie after its last logged window of the system and
    # before the first one a survivor judged
    for sid in SYSTEMS:
        unlogged = sorted(start for s, start in set(in_store) - set(logged) if s == sid)
        if not unlogged:
            continue
        mine = [start for s, start, _ in busiest.judged() if s == sid]
        theirs = [start for name, s, start, _ in judged if s == sid and name != busiest.name]
        assert (not mine or unlogged[0] > max(mine)) and (not theirs or unlogged[-1] < min(
            t for t in theirs if t > unlogged[0])), f"{sid}: {unlogged} were judged by the killed replica"
    assert len(busiest.judged()) == killed_at, "the killed replica judged nothing after SIGKILL"
    after_kill = {name for name, *_ in judged} - {busiest.name}
    survivors_work = [j for j in judged if j[0] != busiest.name]
    assert survivors_work and after_kill, "the surviving replicas took the work over"

    verify = subprocess.run([str(CLI), "evidence", "verify", str(scenario.config_path)], capture_output=True,
                            text=True, timeout=120, check=False, env={**os.environ})
    assert verify.returncode == 0, verify.stdout + verify.stderr
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(text("SELECT count(*) FROM evidence WHERE kind = 'check_run'")).scalar_one()
            loaded = conn.execute(text("SELECT count(*) FROM evidence WHERE kind = 'config_loaded'")).scalar_one()
    finally:
        engine.dispose()
    assert runs == len(in_store), "one check_run evidence record per judged window"
    assert loaded == 3
