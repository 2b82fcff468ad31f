"""What durable commits cost: one CloudEvent per transaction into the SQLite state store, FULL vs NORMAL.

    .venv/bin/python -m benchmarks.state_commits                 # 3 interleaved rounds of 1500 commits each
    .venv/bin/python -m benchmarks.state_commits --rounds 1 --commits 500 --dir /var/lib/aims

The ingest endpoint commits each event before it answers 2xx. With WAL, ``synchronous=NORMAL``
skips the fsync of each commit (a power loss can undo the last ones: acknowledged events lost);
``synchronous=FULL`` (what the state store uses) syncs the WAL on every commit. This stores the
same events through ``agent.store.Store`` both ways, rounds interleaved so a change of machine load
hits both, in a folder on the disk the state store would use (``--dir``; tmpfs would hide the fsync).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from agent.schema import InferenceEvent
from agent.store import Store

BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]})


def measure(mode: str, commits: int, folder: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=folder) as d:
        store = Store(f"sqlite:///{d}/state.db")

        @event.listens_for(store.engine, "connect")
        def _mode(dbapi_conn: Any, _record: Any) -> None:  # after the store's own pragmas
            dbapi_conn.execute(f"PRAGMA synchronous={mode}")

        store.engine.dispose()
        latencies = []
        t0 = time.perf_counter()
        for i in range(commits):
            start = time.perf_counter()
            now = datetime.now(UTC)
            with store.transaction() as s:
                s.add(InferenceEvent(system_id="bench", event_id=str(i), kind="request", ce_type="bench",
                                     ce_source="bench", event_time=now, received_at=now, body=BODY, attributes={}))
            latencies.append(time.perf_counter() - start)
        total = time.perf_counter() - t0
        with store.engine.connect() as conn:
            effective = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
        store.close()
    latencies.sort()
    return {"mode": mode, "pragma": effective, "commits_per_s": commits / total,
            "p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commits", type=int, default=1500)
    ap.add_argument("--dir", help="folder for the databases (default: the system's temporary folder)")
    args = ap.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {"NORMAL": [], "FULL": []}
    for _ in range(args.rounds):
        for mode in results:
            r = measure(mode, args.commits, args.dir)
            results[mode].append(r)
            print(f"{mode:6} {r['commits_per_s']:7.0f} commits/s  p50 {r['p50_ms']:5.2f} ms  "
                  f"p99 {r['p99_ms']:6.2f} ms", flush=True)
    for mode, rs in results.items():
        print(f"median {mode:6} {statistics.median(r['commits_per_s'] for r in rs):7.0f} commits/s  "
              f"p50 {statistics.median(r['p50_ms'] for r in rs):5.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
