"""SQL pushdown against pulling the window into pandas, on a 10M-row x 25-column PostgreSQL table.

    .venv/bin/python -m benchmarks.pushdown [--rows 10000000] [--url postgresql+psycopg://postgres@127.0.0.1/aims_bench]

The table (created once, kept between runs) has a timestamp, 18 numerical features, 4 categorical
features, a sensitive attribute, a score and a label. Both paths compute the same things for the
whole table as one window: a histogram of every numerical column (and the score) on reference edges,
the counts of every categorical column, and the fairness confusion counts per group. Each path runs in
a fresh child process that reports its wall time, its peak RSS above the RSS after imports, and the
bytes received on the loopback interface meanwhile (what the database sent; an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NUMERIC = [f"f{i}" for i in range(18)]
CATEGORICAL = [f"c{i}" for i in range(4)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _status_kib(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert m is not None
    return int(m.group(1)) * 1024


def _rchar() -> int:
    # bytes received on the loopback interface: the database's answers (plus any other loopback traffic
    # at the time, so an upper bound; libpq's recv() is not counted in /proc/self/io)
    m = re.search(r"^\s*lo:\s+(\d+)", Path("/proc/net/dev").read_text(), re.MULTILINE)
    assert m is not None
    return int(m.group(1))


def ensure_table(url: str, rows: int) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if not c.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": u.database}).scalar():
            c.execute(text(f'CREATE DATABASE "{u.database}"'))
    admin.dispose()
    eng = create_engine(u)
    with eng.begin() as c:
        have = c.execute(text("SELECT to_regclass('public.predictions')")).scalar()
        if have is not None and c.execute(text("SELECT count(*) FROM predictions")).scalar() == rows:
            eng.dispose()
            return
        c.execute(text("DROP TABLE IF EXISTS predictions"))
        nums = ", ".join(f"(random() * {i + 1} + {i})::float8 AS {n}" if i % 3 else f"(sqrt(-2 * ln(random())) * "
                         f"cos(2 * pi() * random()))::float8 AS {n}" for i, n in enumerate(NUMERIC))
        cats = ", ".join(f"(ARRAY['a','b','c','d','e'])[1 + floor(random() * {3 + i})::int] AS {n}"
                         for i, n in enumerate(CATEGORICAL))
        span = 10 * 86400
        c.execute(text(
            f"CREATE TABLE predictions AS SELECT "
            f"timestamp '{T0.replace(tzinfo=None).isoformat()}' + (g::float8 / {rows} * {span}) * interval '1 second' "
            f"AS ts, {nums}, {cats}, (ARRAY['A','B','C'])[1 + floor(random() * 3)::int] AS grp, "
            f"random()::float8 AS score, (random() < 0.4)::int AS label FROM generate_series(0, {rows - 1}) g"))
        c.execute(text("ANALYZE predictions"))
    eng.dispose()


def _child(mode: str, url: str, edges_file: str) -> dict[str, Any]:
    import numpy as np

    from config.model import SqlSourceConfig
    from connectors.sources.sql import SqlSource
    from connectors.sources.sql_pushdown import PushdownPlan
    from metrics.fairness import FairnessCounts
    from metrics.sketch import CategoryState, HistogramState

    edges = {k: np.asarray(v) for k, v in json.loads(Path(edges_file).read_text()).items()}
    # the source's default pushdown_concurrency unless PUSHDOWN_CONCURRENCY says otherwise
    conc = os.environ.get("PUSHDOWN_CONCURRENCY")
    extra = {"pushdown_concurrency": int(conc)} if conc else {}
    cfg = SqlSourceConfig.model_validate({"url": url, "table": "predictions", "query_timeout_s": 3600, **extra})
    src = SqlSource(cfg, timestamp_column="ts")
    src.available_columns()
    start, end = T0, T0 + timedelta(days=10)
    base_rss, base_io = _status_kib("VmRSS"), _rchar()
    t0 = time.perf_counter()
    hist: dict[str, HistogramState] = {}
    cats: dict[str, CategoryState] = {}
    if mode == "pushdown":
        plan = PushdownPlan(numerical={n: edges[n] for n in [*NUMERIC, "score"]}, categorical=CATEGORICAL,
                            fairness=[["grp"]], prediction="score", label="label", threshold=0.5,
                            # what the agent knows from the reference: the distinct values of each column
                            cardinality={**dict.fromkeys(CATEGORICAL, 5), "grp": 3, "label": 2})
        agg = src.summarise_window(start, end, plan)
        hist = {n: agg.columns[n].histogram for n in [*NUMERIC, "score"]}  # type: ignore[misc]
        cats = {n: agg.columns[n].categories for n in CATEGORICAL}  # type: ignore[misc]
        fair = agg.fairness["grp"]
    else:
        df = src.read_window(start, end, columns=["ts", *NUMERIC, *CATEGORICAL, "grp", "score", "label"])
        for n in [*NUMERIC, "score"]:
            hist[n] = HistogramState.from_values(edges[n], df[n].to_numpy())
        for n in CATEGORICAL:
            cats[n] = CategoryState.from_values(df[n])
        fair = FairnessCounts.from_arrays(y_pred=df["score"], y_true=df["label"], sensitive=df[["grp"]],
                                          threshold=0.5)
    wall = time.perf_counter() - t0
    out = {"mode": mode, "wall_s": wall, "peak_extra_bytes": _status_kib("VmHWM") - base_rss,
           "bytes_read": _rchar() - base_io, "rows": int(hist["score"].n),
           "hist_counts": {k: v.counts.tolist() for k, v in hist.items()},
           "hist_extremes": {k: [v.minimum, v.maximum] for k, v in hist.items()},
           "hist_sums": {k: [float(x) for x in v.sums] for k, v in hist.items()},
           "cat_counts": {k: {str(a): b for a, b in v.counts.items()} for k, v in cats.items()},
           "fair": {"groups": list(fair.groups), "counts": fair.counts.tolist()}}
    src.close()
    return out


def _edges(url: str, path: Path) -> None:
    from sqlalchemy import create_engine, text

    from metrics.sketch import reference_edges

    eng = create_engine(url)
    with eng.connect() as c:
        cols = ", ".join([*NUMERIC, "score"])
        rows = c.execute(text(f"SELECT {cols} FROM predictions WHERE ts < :t LIMIT 100000"),
                         {"t": (T0 + timedelta(hours=6)).replace(tzinfo=None)}).fetchall()
    eng.dispose()
    import numpy as np

    arr = np.asarray(rows, dtype=np.float64)
    names = [*NUMERIC, "score"]
    path.write_text(json.dumps({n: reference_edges(arr[:, i]).tolist() for i, n in enumerate(names)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/aims_bench")
    ap.add_argument("--child", choices=["pushdown", "pull"])
    ap.add_argument("--edges")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results-pushdown.json"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.url, args.edges)))
        return 0
    t = time.perf_counter()
    ensure_table(args.url, args.rows)
    print(f"table ready in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    edges = ROOT / "benchmarks" / ".pushdown-edges.json"
    _edges(args.url, edges)
    results = {}
    for mode in ("pushdown", "pull"):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.pushdown", "--child", mode, "--url", args.url,
                               "--edges", str(edges)], cwd=ROOT, capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{mode}: {results[mode]['wall_s']:.1f}s (process {time.perf_counter() - t:.1f}s)", file=sys.stderr)
    p, q = results["pushdown"], results["pull"]
    same = (p["cat_counts"] == q["cat_counts"] and p["fair"] == q["fair"] and p["hist_counts"] == q["hist_counts"]
            and p["hist_extremes"] == q["hist_extremes"])
    # per-bin sums: the database's floating-point sums against the exact in-process ones
    sum_error = max(abs(a - b) / max(abs(b), 1e-300) for k in q["hist_sums"]
                    for a, b in zip(p["hist_sums"][k], q["hist_sums"][k], strict=True) if b or a)
    summary = {
        "rows": args.rows, "columns": 25,
        "pushdown": {k: p[k] for k in ("wall_s", "peak_extra_bytes", "bytes_read")},
        "pull": {k: q[k] for k in ("wall_s", "peak_extra_bytes", "bytes_read")},
        "speedup": q["wall_s"] / p["wall_s"],
        "memory_ratio": q["peak_extra_bytes"] / max(p["peak_extra_bytes"], 1),
        "bytes_ratio": q["bytes_read"] / max(p["bytes_read"], 1),
        "identical_counts": same,
        "max_relative_bin_sum_error": sum_error,
    }
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    edges.unlink(missing_ok=True)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
