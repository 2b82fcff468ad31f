"""Run the metrics-engine benchmarks: ``python -m benchmarks.run [--rows N] [--quick]``.

Generates the workload (:mod:`benchmarks.workload`) once under ``benchmarks/data/``, runs every task
in a fresh process (:mod:`benchmarks.tasks`), checks that our verdicts equal evidently's and
fairlearn's, and prints times, peak memory and ratios against the targets. Results go to a JSON
file and a Markdown fragment beside the data. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import measure, workload
from benchmarks.measure import MIB, ProcessRun
from benchmarks.tasks import max_abs_diff

GIB = 1024 * MIB
DEFAULT_DATA = measure.ROOT / "benchmarks" / "data"
FAIRNESS_TOLERANCE = 1e-12
SCORE_REL_TOLERANCE = 1e-9
CORRECTNESS = frozenset({"drift verdicts", "fairness values"})
PACKAGES = ("numpy", "pandas", "pyarrow", "scipy", "evidently", "fairlearn", "scikit-learn")


@dataclass(frozen=True)
class Target:
    """One stated target, the figure measured for it, and whether it is met."""

    name: str
    wanted: str
    measured: str
    met: bool


def environment() -> dict[str, Any]:
    """The machine and versions the figures were taken on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg()[0],
        "versions": {p: metadata.version(p) for p in PACKAGES},
    }


def _cli_command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "aims-agent"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())", *args]


def cli_start_times() -> dict[str, float]:
    """Median start time of the command line, beside a bare interpreter for scale."""
    return {
        "python -c pass": measure.command_start_time([sys.executable, "-c", "pass"]),
        "aims-agent --help": measure.command_start_time(_cli_command("--help")),
        "aims-agent compare --help": measure.command_start_time(_cli_command("compare", "--help")),
    }


def compare_drift(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Same drifted columns and same methods; the largest relative score difference, for information."""
    method_mismatch = [c for c in ours if ours[c]["method"] != theirs[c]["method"]]
    ours_drifted = sorted(c for c in ours if ours[c]["drifted"])
    theirs_drifted = sorted(c for c in theirs if theirs[c]["drifted"])
    worst = 0.0
    for c in ours:
        a, b = ours[c]["score"], theirs[c]["score"]
        if not (math.isnan(a) and math.isnan(b)):
            worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
    return {
        "identical": not method_mismatch and ours_drifted == theirs_drifted and set(ours) == set(theirs),
        "method_mismatch": method_mismatch,
        "drifted_ours": ours_drifted,
        "drifted_theirs": theirs_drifted,
        "max_rel_score_diff": worst,
    }


def _task(name: str, out_dir: Path, reference: Path, current: Path, *extra: str, repeats: int = 1) -> ProcessRun:
    """The task run ``repeats`` times in fresh processes; the run of median wall time, with every run's wall
    time in its report (``runs_wall_s``)."""
    runs = []
    for _ in range(max(1, repeats)):
        print(f"  running {name} ...", flush=True)
        run = measure.run_task(
            name, ["--reference", str(reference), "--current", str(current), *extra], out_dir / f"task-{name}.json"
        )
        print(
            f"    {run.wall_s:8.2f} s wall, {run.cpu_s:8.2f} s CPU, peak RSS {run.peak_rss / MIB:6.0f} MiB, "
            f"load average {run.load_average:.1f}",
            flush=True,
        )
        runs.append(run)
    chosen = sorted(runs, key=lambda r: r.wall_s)[(len(runs) - 1) // 2]
    chosen.report["runs_wall_s"] = [r.wall_s for r in runs]
    return chosen


def _warm(*paths: Path) -> None:
    """Read the files once so that every tool starts with them in the OS page cache (as the agent's recent
    windows are), whichever task comes first."""
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 24):
                pass


def _process_row(label: str, run: ProcessRun) -> dict[str, Any]:
    return {
        "label": label,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "load_average": run.load_average,
        "compute_s": float(run.report["compute_s"]),
        "peak_rss_mib": run.peak_rss / MIB,
        "rss_after_load_mib": run.report["rss_after_load"] / MIB,
        "extra_peak_mib": run.extra_peak / MIB,
        "runs_wall_s": run.report.get("runs_wall_s", [run.wall_s]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    out_dir = data / f"run-{args.rows}"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"workload: {args.rows} rows x {len(workload.FEATURES)} features, window {args.window_rows} rows")
    start = time.perf_counter()
    reference = workload.ensure(data, args.rows, seed=args.seed, side="reference")
    current = workload.ensure(data, args.rows, seed=args.seed, side="current")
    window = workload.ensure(data, args.window_rows, seed=args.seed, side="window")
    print(f"  data ready in {time.perf_counter() - start:.1f} s under {data}")

    results: dict[str, Any] = {"environment": environment(), "rows": args.rows, "window_rows": args.window_rows}
    print("command line start time ...", flush=True)
    results["cli_start_s"] = cli_start_times()

    results["repeats"] = args.repeats
    _warm(reference, current)
    print("drift ...", flush=True)
    n = args.repeats
    ours_drift = _task("ours-drift", out_dir, reference, current, repeats=n)
    ours_prepared = _task("ours-drift-prepared", out_dir, reference, current, repeats=n)
    evidently = _task("evidently-drift", out_dir, reference, current, repeats=n)
    drift_check = compare_drift(ours_drift.report["result"]["columns"], evidently.report["result"]["columns"])
    prepared_check = compare_drift(ours_prepared.report["result"]["columns"], evidently.report["result"]["columns"])
    if prepared_check["drifted_ours"] != drift_check["drifted_ours"] or prepared_check["method_mismatch"]:
        drift_check["method_mismatch"] = [*drift_check["method_mismatch"], "prepared path differs"]
    results["drift"] = {
        "ours": _process_row("ours: dataset_drift (one comparison, as `compare` runs it)", ours_drift),
        "prepared": _process_row("ours: PreparedReference.prepare + compare (the agent's way)", ours_prepared),
        "evidently": _process_row("evidently 0.7 DataDriftPreset", evidently),
        "ours_prepare_s": ours_prepared.report["prepare_s"],
        "ours_compare_s": ours_prepared.report["compare_s"],
        "check": drift_check,
    }

    print("fairness ...", flush=True)
    ours_fair = _task("ours-fairness", out_dir, reference, current, repeats=n)
    fairlearn = _task("fairlearn-fairness", out_dir, reference, current, repeats=n)
    inprocess = _task("fairness-inprocess", out_dir, reference, current)
    results["fairness"] = {
        "ours": _process_row("ours: fairness()", ours_fair),
        "fairlearn": _process_row("fairlearn MetricFrame + 4 gap metrics", fairlearn),
        "inprocess": inprocess.report["result"],
        "max_abs_diff": max_abs_diff(ours_fair.report["result"], fairlearn.report["result"]),
    }

    print("chunked window ...", flush=True)
    chunked = _task("chunked", out_dir, reference, window)
    sample_rows = min(args.sample_rows, args.window_rows)
    error = _task("chunked-error", out_dir, reference, window, "--sample-rows", str(sample_rows))
    errors = error.report["result"]["columns"]
    results["chunked"] = {
        "process": _process_row("chunked: row groups + mergeable states", chunked),
        "rows": chunked.report["result"]["rows"],
        "drifted": sorted(c for c, v in chunked.report["result"]["columns"].items() if v["drifted"]),
        "sample_rows": error.report["result"]["rows"],
        "max_abs_error": {
            method: max((v["abs_error"] for v in errors.values() if v["exact_method"] == method), default=0.0)
            for method in sorted({v["exact_method"] for v in errors.values()})
        },
        "verdicts_equal_on_sample": all(v["same_verdict"] for v in errors.values()),
        "fairness_max_abs_diff_on_sample": error.report["result"]["fairness_max_abs_diff"],
    }
    results["targets"] = [t.__dict__ for t in targets(results)]
    return results


def targets(r: dict[str, Any]) -> list[Target]:
    """The stated targets, judged on the figures."""
    drift, fair, chunk = r["drift"], r["fairness"], r["chunked"]
    speed = drift["evidently"]["wall_s"] / drift["ours"]["wall_s"]
    speed_cpu = drift["evidently"]["cpu_s"] / drift["ours"]["cpu_s"]
    memory = drift["evidently"]["extra_peak_mib"] / max(drift["ours"]["extra_peak_mib"], 1e-9)
    inproc = fair["inprocess"]["fairlearn_all_s"] / fair["inprocess"]["ours_s"]
    whole = fair["fairlearn"]["wall_s"] / fair["ours"]["wall_s"]
    whole_cpu = fair["fairlearn"]["cpu_s"] / fair["ours"]["cpu_s"]
    peak = chunk["process"]["peak_rss_mib"]
    return [
        Target(
            "drift speed, whole processes",
            ">= 50x evidently",
            f"{speed:.1f}x wall clock ({speed_cpu:.1f}x CPU time)",
            speed >= 50,
        ),
        Target("drift extra peak memory", "<= 1/8 of evidently's", f"1/{memory:.1f}", memory >= 8),
        Target(
            "drift verdicts",
            "same drifted columns and methods",
            "identical" if drift["check"]["identical"] else "DIFFERENT",
            bool(drift["check"]["identical"]),
        ),
        Target("fairness speed, in-process", ">= 100x fairlearn", f"{inproc:.0f}x", inproc >= 100),
        Target(
            "fairness speed, whole processes",
            ">= 20x fairlearn",
            f"{whole:.1f}x wall clock ({whole_cpu:.1f}x CPU time)",
            whole >= 20,
        ),
        Target(
            "fairness values",
            f"equal to {FAIRNESS_TOLERANCE:g}",
            f"max diff {fair['max_abs_diff']:.1e}",
            fair["max_abs_diff"] <= FAIRNESS_TOLERANCE,
        ),
        Target(f"chunked {chunk['rows']:,}-row window peak RSS", "< 1 GiB", f"{peak:.0f} MiB", peak * MIB < GIB),
    ]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | whole process, wall (s) | whole process, CPU (s) | computation, wall (s) | peak RSS (MiB) "
        "| RSS after imports+load (MiB) | extra peak (MiB) | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {row['compute_s']:.3f} "
            f"| {row['peak_rss_mib']:.0f} | {row['rss_after_load_mib']:.0f} | {row['extra_peak_mib']:.0f} "
            f"| {row['load_average']:.1f} |"
        )
    return lines


def markdown(r: dict[str, Any]) -> dict[str, list[str]]:
    """The three report sections, by heading."""
    env = r["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    machine = (
        f"Measured {env['date']} on {env['nproc']} cores ({env['cpu']}), {env['ram_gib']} GiB RAM; "
        f"Python {env['python']}, {versions}."
    )
    verdict = {t["name"]: t for t in r["targets"]}

    def target_line(name: str) -> str:
        t = verdict[name]
        return f"- {t['name']}: target {t['wanted']}, measured {t['measured']}: **{'met' if t['met'] else 'not met'}**"

    d, f, c = r["drift"], r["fairness"], r["chunked"]
    drift = [
        machine,
        "",
        f"{r['rows']:,} rows x {len(workload.FEATURES)} features per side (reference and current Parquet files, "
        f"read once before so that they are in the page cache), each tool in a fresh process, the run of median "
        f"wall time of {r.get('repeats', 1)}:",
        "",
        *_table([d["evidently"], d["ours"], d["prepared"]]),
        "",
        "Wall time of every run (s): " + "; ".join(
            f"{row['label']} {', '.join(f'{w:.2f}' for w in row['runs_wall_s'])}"
            for row in (d["evidently"], d["ours"], d["prepared"])) + ".",
        "",
        "The targets compare one comparison with one comparison (the first two rows). The agent prepares a "
        f"reference once and compares every window with it: {d['ours_prepare_s']:.2f} s to prepare (sort, "
        f"count and digest), {d['ours_compare_s']:.2f} s per window. Computation alone, one comparison: "
        f"{d['evidently']['compute_s'] / d['ours']['compute_s']:.0f}x.",
        f"Verdicts: drifted columns (both) {', '.join(d['check']['drifted_ours'])}; methods differing: "
        f"{d['check']['method_mismatch'] or 'none'}; largest relative score difference "
        f"{d['check']['max_rel_score_diff']:.1e}.",
        "",
        target_line("drift speed, whole processes"),
        target_line("drift extra peak memory"),
        target_line("drift verdicts"),
    ]
    ip = f["inprocess"]
    fairness_lines = [
        machine,
        "",
        f"{r['rows']:,} rows, 4 groups, binary label and prediction; whole processes, the run of median wall "
        f"time of {r.get('repeats', 1)}:",
        "",
        *_table([f["fairlearn"], f["ours"]]),
        "",
        "In one warm process (imports done, both warmed up; ours the median of 7 runs):",
        "",
        "| computation | seconds |",
        "|---|---:|",
        f"| fairlearn MetricFrame (selection rate, TPR, FPR, count) | {ip['fairlearn_metricframe_s']:.3f} |",
        f"| fairlearn MetricFrame + the 4 gap metrics | {ip['fairlearn_all_s']:.3f} |",
        f"| ours: fairness() (the same rates and gaps, plus intervals) | {ip['ours_s']:.4f} |",
        "",
        f"Largest difference over every group rate and gap: {f['max_abs_diff']:.1e}.",
        "",
        target_line("fairness speed, in-process"),
        target_line("fairness speed, whole processes"),
        target_line("fairness values"),
    ]
    errors = ", ".join(f"{m} {e:.1e}" for m, e in c["max_abs_error"].items())
    chunk_lines = [
        machine,
        "",
        f"A {c['rows']:,}-row window read as Parquet row groups (pyarrow `iter_batches`), folded into mergeable "
        "states (`HistogramState` per numerical feature, category counts, `FairnessCounts.merge`) and judged "
        f"against the {r['rows']:,}-row reference; one process, reference loading included:",
        "",
        *_table([c["process"]]),
        "",
        f"Drifted columns: {', '.join(c['drifted'])}.",
        f"Against the exact path on the first {c['sample_rows']:,} rows of the window: largest absolute score "
        f"error per method {errors}; verdicts and methods "
        f"{'all equal' if c['verdicts_equal_on_sample'] else 'NOT all equal'}; fairness values differ by at most "
        f"{c['fairness_max_abs_diff_on_sample']:.1e}.",
        "",
        target_line(f"chunked {c['rows']:,}-row window peak RSS"),
    ]
    return {"Drift": drift, "Fairness": fairness_lines, "Chunked 10M-row window": chunk_lines}


def print_summary(r: dict[str, Any]) -> None:
    print()
    print("command line start (median of 5):")
    for command, seconds in r["cli_start_s"].items():
        print(f"  {command:28s} {seconds * 1000:7.0f} ms")
    for heading, lines in markdown(r).items():
        print()
        print(f"== {heading} ==")
        print("\n".join(lines[2:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side for drift and fairness")
    parser.add_argument("--window-rows", type=int, default=10_000_000, help="rows of the chunked window")
    parser.add_argument("--sample-rows", type=int, default=1_000_000, help="window rows checked against exact")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="where the Parquet files and results go")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each whole-process drift and fairness task")
    parser.add_argument("--quick", action="store_true", help="100k rows and a 1M-row window: a minute or two")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.window_rows, args.sample_rows = 100_000, 1_000_000, 100_000
    results = run(args)
    print_summary(results)
    stem = Path(args.data_dir) / f"results-{args.rows}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, allow_nan=True))
    sections = markdown(results)
    stem.with_suffix(".md").write_text(
        "".join(f"## {heading}\n\n" + "\n".join(lines) + "\n\n" for heading, lines in sections.items())
    )
    print(f"\nresults: {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    # Speed and memory targets are reported; only a disagreement with the peers fails the command.
    agreement = [t for t in results["targets"] if t["name"] in CORRECTNESS]
    return 0 if all(t["met"] for t in agreement) else 1


if __name__ == "__main__":
    sys.exit(main())
