"""``aims-agent run`` judges windows in a worker process: the resident service never maps pandas, numpy,
pyarrow or scipy, the worker stops when idle, a worker killed between checks is replaced, and a worker
whose service dies exits on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from agent.exposition import MAX_STALE_S
from agent.runner import Agent
from agent.service import Service
from agent.worker import CheckWorker
from config.errors import WorkerError
from config.loader import load_config
from tests.conftest import Scenario, free_port

CLI = Path(sys.executable).with_name("aims-agent")
HEAVY = ("/pandas/", "/numpy/", "/numpy.libs/", "/scipy/", "/scipy.libs/", "/pyarrow/")
HOURS = 3


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in Path(
                    f"/proc/{entry}/cmdline").read_bytes():
                out.append(int(entry))  # a worker (not multiprocessing's resource tracker)
    return out


def _heavy_mapped(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if any(h in line for h in HEAVY)})


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _live(sc: Scenario, idle_exit: str, catch_up: int = 24) -> datetime:
    """Three judged-able hours just past, then nothing due for the rest of this hour."""
    now = datetime.now(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS)
    for h in range(HOURS):
        sc.hour(first + timedelta(hours=h), shift=2.0 if h else 0.0)
    cfg = sc.config()
    cfg["agent"]["worker"] = {"idle_exit": idle_exit}
    cfg["systems"][0]["window"] = {"size": "1h", "min_rows": 100, "start": first.isoformat(),
                                   "max_catch_up": catch_up}
    cfg["systems"][0]["schedule"] = {"every": "1s"}
    sc.rewrite(cfg)
    return first


def _judged(sc: Scenario) -> int:
    eng = create_engine(f"sqlite:///{sc.dir / 'state.db'}")
    try:
        with eng.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM check_runs")).scalar_one())
    except Exception:
        return 0
    finally:
        eng.dispose()


@pytest.fixture
def service_proc(scenario: Scenario) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    _live(scenario, "2s")
    port = free_port()
    log = scenario.dir / "run.log"
    with log.open("wb") as stream:
        proc = subprocess.Popen([str(CLI), "run", "--config", str(scenario.config_path), "--port", str(port)],
                                stdout=stream, stderr=subprocess.STDOUT, cwd=scenario.dir)
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_resident_service_never_loads_the_judging_libraries(
        scenario: Scenario, service_proc: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, port, log = service_proc
    deadline = time.monotonic() + 90
    while _judged(scenario) < HOURS:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the windows were not judged: {log.read_text()[-3000:]}"
        time.sleep(0.3)
    # the worker judged them; the service serves them, with nothing of pandas and friends mapped
    # while the check is still ending a scrape may serve the last body, for MAX_STALE_S at most
    deadline = time.monotonic() + MAX_STALE_S + 5
    body = ""
    while 'aims_feature_drift_score{feature="x1"' not in body:
        assert time.monotonic() < deadline, body[-2000:]
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        time.sleep(0.2)
    assert _heavy_mapped(proc.pid) == []
    # the worker exits after 2 s without a check (the next window is due next hour)
    deadline = time.monotonic() + 40
    while _children(proc.pid):
        assert time.monotonic() < deadline, f"the idle worker did not stop: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    assert "stopped the idle worker process" in log.read_text()
    assert _heavy_mapped(proc.pid) == []
    assert _rss_mib(proc.pid) < 150, "the resident service outgrew its budget (see docs/performance.md)"
    assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200


def test_a_worker_whose_service_dies_exits_on_its_own(
        scenario: Scenario, service_proc: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, _, log = service_proc
    deadline = time.monotonic() + 90
    while not _children(proc.pid):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no worker was started"
        time.sleep(0.1)
    worker = _children(proc.pid)[0]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and "Z" not in Path(f"/proc/{worker}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the orphaned worker kept running"
        time.sleep(0.2)


def _failures(sc: Scenario) -> list[str]:
    eng = create_engine(f"sqlite:///{sc.dir / 'state.db'}")
    try:
        with eng.connect() as c:
            rows = c.execute(text("SELECT payload FROM evidence WHERE kind = 'check_failed'")).scalars()
            return [json.loads(p)["window"]["start"] if isinstance(p, str) else p["window"]["start"] for p in rows]
    finally:
        eng.dispose()


def test_a_worker_killed_between_checks_is_replaced_and_one_killed_mid_check_fails_it_cleanly(
        scenario: Scenario) -> None:
    first = _live(scenario, "10m", catch_up=1)
    cfg = load_config(scenario.config_path)
    agent = Agent(cfg, base_dir=scenario.dir)
    worker = CheckWorker(cfg, scenario.dir, idle_exit=None)
    service = Service(agent, run_on_start=False, worker=worker)
    try:
        # the first window is judged in the worker; this process never read the reference
        outcomes = service.run_system("scoring")
        assert outcomes is not None and [(o.window_start, o.status) for o in outcomes] == [(first, "ok")]
        assert outcomes[0].verdicts == [], "the verdicts stay in the store"
        assert worker.started == 1 and not agent._references
        # killed while idle: the next check starts a new worker and judges the next window
        os.kill(worker.pids()[0], signal.SIGKILL)
        time.sleep(0.5)
        outcomes = service.run_system("scoring")
        assert outcomes is not None and [o.window_start for o in outcomes] == [first + timedelta(hours=1)]
        assert worker.started == 2
        # killed while a check is in its hands: that check fails, is recorded, and its window is judged later
        pool = worker._executor()
        busy = pool.submit(time.sleep, 5)
        worker._busy -= 1
        pid = worker.pids()[0]
        threading.Timer(1.0, os.kill, args=(pid, signal.SIGKILL)).start()
        with pytest.raises(WorkerError, match="worker process judging scoring died"):
            service.run_system("scoring")
        assert busy.exception() is not None
        assert _failures(scenario) == [(first + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
        outcomes = service.run_system("scoring")
        assert outcomes is not None and [o.window_start for o in outcomes] == [first + timedelta(hours=2)]
        assert outcomes[0].status == "breach" and worker.started == 3
    finally:
        service.stop()
        worker.close()
        agent.close()
