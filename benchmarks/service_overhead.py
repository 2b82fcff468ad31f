"""Service overhead: idle RSS of `aims-agent run`, CPU per check, and /metrics latency at scale.

    .venv/bin/python benchmarks/service_overhead.py                       # 100 systems x 50 features
    .venv/bin/python benchmarks/service_overhead.py --systems 10 --features 20 --scrapes 100

1. Builds N systems of F numerical features (plus a categorical one, a score and a sensitive group),
   each reading its own day of predictions from a Parquet file, in a SQLite state store.
2. Judges one window per system but the last 20 (`--left-due`) in this process through the real runner
   (CPU per check).
3. Starts `aims-agent run` on that state: its worker process judges the 20 windows left due while a
   client scrapes /metrics every 50 ms (latency of scrapes while checks commit), and exits after 10 s
   idle (the worker's peak RSS and the service's RSS meanwhile are reported); then the service's idle
   RSS from /proc, and /metrics scraped 300 times: p50/p99 latency, exposition size.
Prints one JSON object; `--out FILE` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import status_kib, worker_pids  # noqa: E402 (after the path is set)

WORKER_IDLE_S = 10


def frame(rng: np.random.Generator, n: int, features: int, start: datetime, span: timedelta,
          shift: float) -> pd.DataFrame:
    data: dict[str, Any] = {f"f{i:02d}": rng.normal(shift if i % 7 == 0 else 0.0, 1.0, n) for i in range(features)}
    data["segment"] = rng.choice(["a", "b", "c"], n)
    data["group"] = rng.choice(["A", "B"], n)
    data["score"] = 1 / (1 + np.exp(-data["f00"]))
    offsets = np.sort(rng.integers(0, int(span.total_seconds()), n))
    data["ts"] = [(start + timedelta(seconds=int(o))).replace(tzinfo=None) for o in offsets]
    data["id"] = [f"r{i}" for i in range(n)]
    return pd.DataFrame(data)


def build(tmp: Path, systems: int, features: int, rows: int) -> tuple[Path, datetime]:
    rng = np.random.default_rng(1)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    frame(rng, 5000, features, day - timedelta(days=7), timedelta(days=6), 0.0).to_parquet(tmp / "reference.parquet")
    frame(rng, rows, features, day, timedelta(days=1), 0.8).to_parquet(tmp / "current.parquet")
    system = {
        "name": "Benchmark model", "purpose": "Measures overhead.", "role": "provider", "risk_tier": "minimal",
        "owner": {"team": "Platform", "contact": "platform@example.com"},
        "model": {"name": "bench", "version": "1"},
        "schema": {"id_column": "id", "timestamp_column": "ts",
                   "features": {**{f"f{i:02d}": "numerical" for i in range(features)}, "segment": "categorical"},
                   "prediction": {"column": "score", "kind": "score"}, "sensitive": ["group"]},
        "reference": {"type": "file", "path": str(tmp / "reference.parquet")},
        "source": {"type": "file", "path": str(tmp / "current.parquet")},
        "window": {"size": "1d", "min_rows": 100, "start": day.isoformat()},
        "schedule": {"every": "1h"},
        "checks": {"fairness": {"enabled": True, "sensitive": ["group"]}},
    }
    cfg = {"agent": {"state_url": f"sqlite:///{tmp / 'state.db'}", "worker": {"idle_exit": f"{WORKER_IDLE_S}s"}},
           "sinks": {"local": {"type": "local_folder", "path": str(tmp / "tickets")}},
           "systems": [{**system, "id": f"model-{i:03d}"} for i in range(systems)]}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, day


def judge_all(config: Path, day: datetime, left_due: int) -> dict[str, float]:
    from agent.runner import Agent
    from config.loader import load_config

    agent = Agent(load_config(config), base_dir=config.parent)
    try:
        agent.record_config_loaded(str(config))
        first = agent.cfg.systems[0]
        agent.reference(first)  # the first reference read includes imports; keep it out of the figure
        cpu: list[float] = []
        wall: list[float] = []
        # the last systems' windows are left for the service: its worker judges them while we scrape
        for system in agent.cfg.systems[:-left_due]:
            c0, w0 = time.process_time(), time.perf_counter()
            outcome = agent.run_window(system, day, day + timedelta(days=1), day + timedelta(days=1, hours=1))
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            assert outcome.status not in ("failed", "skipped"), outcome
        agent.deliver()
    finally:
        agent.close()
    return {"checks": len(cpu), "cpu_s_per_check_median": statistics.median(cpu),
            "cpu_s_per_check_mean": statistics.fmean(cpu), "wall_s_per_check_median": statistics.median(wall)}


def rss_mib(pid: int) -> float:
    kib = status_kib(pid, "VmRSS")
    if not kib:
        raise RuntimeError(f"process {pid} is gone")
    return kib / 1024


def _scrape_while(url: str, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.get(f"{url}/metrics").raise_for_status()
            out.append((time.monotonic(), time.perf_counter() - t0))
            time.sleep(0.05)


def _judged(config: Path) -> int:
    import sqlite3

    con = sqlite3.connect(config.parent / "state.db")
    try:
        return int(con.execute("SELECT count(*) FROM check_runs").fetchone()[0])
    finally:
        con.close()


def serve_and_scrape(config: Path, scrapes: int, settle_s: float, systems: int) -> dict[str, Any]:
    port = _free_port()
    cli = Path(sys.executable).with_name("aims-agent")
    proc = subprocess.Popen([str(cli), "run", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the agent did not become ready")
        # the on-start checks judge the windows left due in a worker process, which then exits when idle;
        # meanwhile a client scrapes every 50 ms: its latencies until the last window is committed are
        # those of scrapes while checks commit
        stop = threading.Event()
        busy: list[tuple[float, float]] = []
        scraper = threading.Thread(target=_scrape_while, args=(url, stop, busy), daemon=True)
        scraper.start()
        done_at: list[float] = []

        def watch_commits() -> None:
            while _judged(config) < systems and not stop.is_set():
                time.sleep(0.05)
            done_at.append(time.monotonic())

        watcher = threading.Thread(target=watch_commits, daemon=True)
        watcher.start()
        worker = _worker_life(proc.pid, timeout=120 + WORKER_IDLE_S)
        watcher.join(timeout=60)
        stop.set()
        scraper.join(timeout=60)
        during = sorted(dt for t, dt in busy if done_at and t <= done_at[0])
        t_first = busy[0][0] if busy else 0.0
        worker["slow_scrapes_while_checks"] = [(round(t - t_first, 2), round(dt * 1000, 1)) for t, dt in busy
                                               if dt > 0.05 and done_at and t <= done_at[0]]
        if during:
            worker.update({"scrapes_while_checks_commit": len(during),
                           "scrape_while_checks_p50_ms": round(1000 * during[len(during) // 2], 2),
                           "scrape_while_checks_p99_ms": round(1000 * during[min(len(during) - 1,
                                                                                 int(len(during) * 0.99))], 2),
                           "scrape_while_checks_max_ms": round(1000 * during[-1], 2)})
        time.sleep(settle_s)
        idle_rss = rss_mib(proc.pid)
        cpu0 = _proc_cpu(proc.pid)
        time.sleep(10)
        idle_cpu = (_proc_cpu(proc.pid) - cpu0) / 10
        lat: list[float] = []
        size = 0
        series = 0
        with httpx.Client(timeout=10) as client:
            for i in range(scrapes + 5):
                t0 = time.perf_counter()
                r = client.get(f"{url}/metrics")
                dt = time.perf_counter() - t0
                r.raise_for_status()
                if i >= 5:  # the first scrapes warm the connection pool and caches
                    lat.append(dt)
                size = len(r.content)
                series = sum(1 for ln in r.text.splitlines() if ln and not ln.startswith("#"))
        lat.sort()
        return {**worker, "idle_rss_mib": round(idle_rss, 1), "idle_cpu_share": round(idle_cpu, 4),
                "rss_after_scrapes_mib": round(rss_mib(proc.pid), 1),
                "scrape_p50_ms": round(1000 * lat[len(lat) // 2], 2),
                "scrape_p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
                "scrape_max_ms": round(1000 * lat[-1], 2), "scrapes": len(lat),
                "exposition_bytes": size, "series": series}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _worker_life(parent: int, timeout: float) -> dict[str, Any]:
    """Follow the service's worker process from start to exit: its peak RSS, the service's RSS meanwhile."""
    deadline = time.monotonic() + timeout
    peak = parent_peak = 0.0
    seen = False
    while time.monotonic() < deadline:
        kids = worker_pids(parent)
        if kids:
            seen = True
            for k in kids:
                peak = max(peak, status_kib(k, "VmHWM") / 1024)
            parent_peak = max(parent_peak, rss_mib(parent))
        elif seen:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the worker process did not exit after its idle time")
    return {"worker_peak_rss_mib": round(peak, 1), "service_rss_while_judging_mib": round(parent_peak, 1)}


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", type=int, default=100)
    p.add_argument("--features", type=int, default=50)
    p.add_argument("--rows", type=int, default=2000, help="rows per judged window")
    p.add_argument("--scrapes", type=int, default=300)
    p.add_argument("--left-due", type=int, default=20, help="systems whose window the service judges itself")
    p.add_argument("--settle", type=float, default=15.0, help="seconds to wait before reading the idle RSS")
    p.add_argument("--out")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="aims-bench-") as d:
        tmp = Path(d)
        config, day = build(tmp, args.systems, args.features, args.rows)
        checks = judge_all(config, day, args.left_due)
        served = serve_and_scrape(config, args.scrapes, args.settle, args.systems)
    result = {"systems": args.systems, "features": args.features, "rows_per_window": args.rows,
              "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "bench_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              **{k: round(v, 4) if isinstance(v, float) else v for k, v in checks.items()}, **served}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
