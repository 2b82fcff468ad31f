"""CloudEvents ingest under load, with concurrent /metrics scrapes, and a memory soak.

    .venv/bin/python -m benchmarks.ingest_load                 # rate ramp + 10-minute soak
    .venv/bin/python -m benchmarks.ingest_load --soak 60       # shorter soak
    .venv/bin/python -m benchmarks.ingest_load --state-url postgresql+psycopg://postgres@127.0.0.1/aims_load

Starts ``aims-agent run`` as a subprocess on 127.0.0.1 (SQLite state store by default), replays
KServe's binary-mode header set (request and response halves sharing ce-id), and steps the offered
rate up until the agent no longer keeps up (achieved rate below 95 % of offered, any error, or p99
above 250 ms). Two scrapers read /metrics every second throughout. The soak then holds the highest
sustained rate and samples the server's RSS every 5 s; memory is "flat" when the last third's mean is
within 10 % of the first third's. Every request is bounded in count and time and goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.measure import status_kib, worker_pids

TOKEN = "load-ingest-token-0123456789abcdef"
SYSTEM = "kserve-sklearn"


def _config(tmp: Path, port: int, state_url: str) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({"f0": rng.normal(size=2000), "f1": rng.normal(size=2000), "f2": rng.normal(size=2000),
                  "f3": rng.normal(size=2000), "prediction": rng.integers(0, 2, size=2000),
                  "ts": pd.Timestamp("2026-01-01")}).to_parquet(tmp / "reference.parquet", index=False)
    cfg = {
        "agent": {"state_url": state_url, "server": {"host": "127.0.0.1", "port": port},
                  "tokens": [{"name": "load", "value": TOKEN, "scopes": ["read", "ingest"]}]},
        "sinks": {"local": {"type": "local_folder", "path": str(tmp / "tickets")}},
        "systems": [{
            "id": SYSTEM, "name": "sklearn iris on KServe", "purpose": "load test", "role": "deployer",
            "risk_tier": "minimal", "owner": {"team": "ml", "contact": "ml@example.com"},
            "model": {"name": "sklearn-iris", "version": "1"},
            "schema": {"id_column": "id", "timestamp_column": "ts",
                       "features": {"f0": "numerical", "f1": "numerical", "f2": "numerical", "f3": "numerical"},
                       "prediction": {"column": "prediction", "kind": "classification"}},
            "reference": {"type": "file", "path": str(tmp / "reference.parquet")},
            "source": {"type": "cloudevents", "system": SYSTEM, "feature_names": ["f0", "f1", "f2", "f3"]},
            "window": {"size": "1m", "min_rows": 50},
            "schedule": {"every": "30s"},
        }],
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _headers(event_id: str, half: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "http://localhost:9081/",
        "ce-type": f"org.kubeflow.serving.inference.{half}", "ce-time": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ce-inferenceservicename": "sklearn-iris", "ce-namespace": "models", "ce-component": "predictor",
        "ce-endpoint": "", "ce-metadata": "{}", "content-type": "application/json",
        "authorization": f"Bearer {TOKEN}",
    }


REQUEST = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]}).encode()
RESPONSE = json.dumps({"predictions": [1]}).encode()


@dataclass
class Step:
    offered: float
    sent: int = 0
    errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # what each error was
    latencies: list[float] = field(default_factory=list)
    scrape_latencies: list[float] = field(default_factory=list)
    duration: float = 0.0

    @property
    def achieved(self) -> float:
        return (self.sent - self.errors) / self.duration if self.duration else 0.0

    def p(self, q: float, values: list[float] | None = None) -> float:
        vals = sorted(values if values is not None else self.latencies)
        return vals[min(len(vals) - 1, int(q * len(vals)))] * 1000 if vals else float("nan")


async def _scraper(client: httpx.AsyncClient, base: str, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        r = await client.get(f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        if r.status_code == 200:
            out.append(time.perf_counter() - t0)
        await asyncio.sleep(1.0)


async def _run_step(base: str, rate: float, seconds: float, concurrency: int) -> Step:
    """Offer ``rate`` events per second (request + response halves count as two) for ``seconds``."""
    step = Step(offered=rate)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        stop = asyncio.Event()
        scrapers = [asyncio.create_task(_scraper(client, base, stop, step.scrape_latencies)) for _ in range(2)]
        sem = asyncio.Semaphore(concurrency)
        url = f"{base}/api/v1/ingest/{SYSTEM}/cloudevents"

        async def send(event_id: str, half: str, body: bytes) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=_headers(event_id, half))
                    ok = r.status_code in (200, 202)
                    if not ok:
                        step.failures[f"HTTP {r.status_code}: {r.text[:200]}"] += 1
                except httpx.HTTPError as exc:
                    ok = False
                    step.failures[f"{type(exc).__name__} after {time.perf_counter() - t0:.1f} s"] += 1
                step.latencies.append(time.perf_counter() - t0)
                step.sent += 1
                step.errors += 0 if ok else 1

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(0, n, 2):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            eid = str(uuid.uuid4())
            tasks.append(asyncio.create_task(send(eid, "request", REQUEST)))
            tasks.append(asyncio.create_task(send(eid, "response", RESPONSE)))
        await asyncio.gather(*tasks)
        step.duration = time.perf_counter() - start
        stop.set()
        await asyncio.gather(*scrapers)
    return step


async def _soak(base: str, pid: int, rate: float, seconds: float, concurrency: int) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    workers: list[int] = []
    step_s = 20.0
    errors = sent = 0
    failures: Counter[str] = Counter()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        st = await _run_step(base, rate, min(step_s, seconds - (time.monotonic() - t0)), concurrency)
        sent += st.sent
        errors += st.errors
        failures.update(st.failures)
        samples.append((time.monotonic() - t0, status_kib(pid, 'VmRSS')))
        workers.append(sum(status_kib(w, 'VmRSS') for w in worker_pids(pid)))
    third = max(1, len(samples) // 3)
    first = statistics.mean(r for _, r in samples[:third])
    last = statistics.mean(r for _, r in samples[-third:])
    return {"seconds": seconds, "rate": rate, "sent": sent, "errors": errors, "failures": dict(failures),
            "rss_first_mib": first / 1024,
            "rss_last_mib": last / 1024, "growth": (last - first) / first, "flat": abs(last - first) / first <= 0.10,
            "samples": [(round(t), round(r / 1024, 1)) for t, r in samples],
            "worker_rss_mib": [round(w / 1024, 1) for w in workers]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-url", help="state store URL (default: SQLite in a temporary folder)")
    ap.add_argument("--start-rate", type=float, default=100.0)
    ap.add_argument("--max-rate", type=float, default=5000.0)
    ap.add_argument("--step-seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--soak", type=float, default=600.0, help="soak seconds at the highest sustained rate")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        from tests.conftest import free_port

        port = free_port()
        cfg = _config(tmp, port, args.state_url or f"sqlite:///{tmp / 'state.db'}")
        server = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            idle = status_kib(server.pid, 'VmRSS')
            steps: list[Step] = []
            rate = args.start_rate
            best: Step | None = None
            while rate <= args.max_rate:
                st = asyncio.run(_run_step(base, rate, args.step_seconds, args.concurrency))
                steps.append(st)
                ok = st.errors == 0 and st.achieved >= 0.95 * rate and st.p(0.99) <= 250
                print(f"offered {rate:7.0f}/s  achieved {st.achieved:7.0f}/s  errors {st.errors:4d}  "
                      f"p50 {st.p(0.5):6.1f} ms  p99 {st.p(0.99):6.1f} ms  "
                      f"scrape p99 {st.p(0.99, st.scrape_latencies):6.1f} ms  {'ok' if ok else 'saturated'}")
                if not ok:
                    break
                best = st
                rate *= 1.5
            if best is None:
                print("the agent did not sustain the starting rate", file=sys.stderr)
                return 1
            print(f"highest sustained: {best.offered:.0f} events/s, p99 {best.p(0.99):.1f} ms")
            soak = asyncio.run(_soak(base, server.pid, best.offered * 0.8, args.soak, args.concurrency))
            print(f"failures: {soak['failures']}")
            print(f"soak {soak['seconds']:.0f} s at {soak['rate']:.0f}/s: {soak['sent']} events, {soak['errors']} "
                  f"errors, RSS {soak['rss_first_mib']:.1f} -> {soak['rss_last_mib']:.1f} MiB "
                  f"({soak['growth']:+.1%}) {'flat' if soak['flat'] else 'GROWING'}")
            result = {"idle_rss_mib": idle / 1024,
                      "steps": [{"offered": s.offered, "achieved": s.achieved, "errors": s.errors,
                                 "p50_ms": s.p(0.5), "p99_ms": s.p(0.99),
                                 "scrape_p99_ms": s.p(0.99, s.scrape_latencies)} for s in steps],
                      "highest_sustained": best.offered, "soak": soak}
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2))
            return 0
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
