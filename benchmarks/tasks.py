"""One benchmarked task per process: ``python -m benchmarks.tasks TASK --reference R --current C --out OUT``.

Each task imports what it needs, loads its data, marks the RSS there, resets the peak, computes, and
writes a JSON report (phase times, RSS after loading, peak RSS of the computation, and the verdicts
the parent compares). The parent (:mod:`benchmarks.run`) measures the process from outside.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import measure, workload

FAIRNESS_COLUMNS = [workload.SENSITIVE, workload.LABEL, workload.PREDICTION]
Result = dict[str, Any]


class Phases:
    """Phase timings and the memory marks every task reports."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.last = self.started
        self.rss_after_load = 0
        self.peak_before_reset = 0
        self.peak_reset = False

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = now - self.last
        self.last = now

    def loaded(self) -> None:
        """Imports and data are in memory: what follows is the computation."""
        self.mark("load_s")
        self.rss_after_load = measure.rss_bytes()
        self.peak_before_reset = measure.peak_rss_bytes()
        self.peak_reset = measure.reset_peak()
        self.last = time.perf_counter()

    def report(self, result: Result) -> Result:
        compute_peak = measure.peak_rss_bytes()
        return {
            **self.marks,
            "rss_after_load": self.rss_after_load,
            "compute_peak_rss": compute_peak,
            "process_peak_rss": max(self.peak_before_reset, compute_peak),
            "peak_reset": self.peak_reset,
            "result": result,
        }


# --- drift ------------------------------------------------------------------------------------------------


def _import_scipy() -> None:
    """The scipy modules our p-value tests import lazily, imported before the clock starts: evidently's
    import (timed apart, as here) loads them too, so neither tool's computation pays for an import.
    Drift under ``auto`` on large samples (wasserstein, jensenshannon) needs none of them, so its tasks
    do not call this: their whole process is what ``compare`` pays."""
    import scipy.spatial.distance
    import scipy.special
    import scipy.stats  # noqa: F401


def _scipy_loaded() -> int:
    """How many scipy modules the process holds (0 when the computation needed none)."""
    return sum(1 for m in sys.modules if m.split(".")[0] == "scipy")


def _drift_frames(args: argparse.Namespace, phases: Phases) -> tuple[Any, Any]:
    reference = workload.load(args.reference, workload.FEATURES)
    current = workload.load(args.current, workload.FEATURES)
    phases.loaded()
    return reference, current


def task_evidently_drift(args: argparse.Namespace) -> Result:
    phases = Phases()
    # The adapter imports evidently lazily; import it here so the import is not counted as computation.
    import evidently.presets  # noqa: F401
    from evidently.legacy.calculations import stattests  # noqa: F401

    from metrics.evidently_adapter import evidently_drift

    phases.mark("import_s")
    reference, current = _drift_frames(args, phases)
    verdict = evidently_drift(reference, current, workload.FEATURES, workload.KINDS)
    phases.mark("compute_s")
    columns = {c: {"method": m, "score": s, "drifted": d} for c, (m, s, d) in verdict.columns.items()}
    return phases.report({"columns": columns, "drifted_count": verdict.drifted_count, "dataset": verdict.dataset_drift})


def task_ours_drift(args: argparse.Namespace) -> Result:
    """One comparison of two files, as evidently's Report.run is: ``dataset_drift`` (what ``compare`` runs)."""
    phases = Phases()
    from metrics.drift import dataset_drift

    phases.mark("import_s")
    reference, current = _drift_frames(args, phases)
    verdict = dataset_drift(reference, current, columns=workload.FEATURES, kinds=workload.KINDS)
    phases.mark("compute_s")
    columns = {c.column: {"method": c.method, "score": c.score, "drifted": c.drifted} for c in verdict.columns}
    return phases.report({"columns": columns, "drifted_count": verdict.drifted_count, "dataset": verdict.dataset_drift,
                          "scipy_modules": _scipy_loaded()})


def task_ours_drift_prepared(args: argparse.Namespace) -> Result:
    """The agent's way: the reference prepared once (sorted, counted, digested), then a window compared."""
    phases = Phases()
    from metrics.drift import PreparedReference

    phases.mark("import_s")
    reference, current = _drift_frames(args, phases)
    prepared = PreparedReference.prepare(reference, columns=workload.FEATURES, kinds=workload.KINDS)
    phases.mark("prepare_s")
    verdict = prepared.compare(current)
    phases.mark("compare_s")
    phases.marks["compute_s"] = phases.marks["prepare_s"] + phases.marks["compare_s"]
    columns = {c.column: {"method": c.method, "score": c.score, "drifted": c.drifted} for c in verdict.columns}
    return phases.report({"columns": columns, "drifted_count": verdict.drifted_count, "dataset": verdict.dataset_drift,
                          "scipy_modules": _scipy_loaded()})


# --- fairness ---------------------------------------------------------------------------------------------

_FAIRLEARN_RATES = ("selection_rate", "true_positive_rate", "false_positive_rate", "count")


def fairlearn_fairness(frame: Any) -> Result:
    """fairlearn's per-group rates (MetricFrame) and the four gap metrics."""
    from fairlearn import metrics as fm

    y_true = frame[workload.LABEL].to_numpy()
    y_pred = frame[workload.PREDICTION].to_numpy()
    sensitive = frame[workload.SENSITIVE]
    by_group = fm.MetricFrame(
        metrics={name: getattr(fm, name) for name in _FAIRLEARN_RATES},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive,
    ).by_group.dropna(subset=["count"])
    gaps = {
        name: float(getattr(fm, name)(y_true, y_pred, sensitive_features=sensitive))
        for name in (
            "demographic_parity_difference",
            "demographic_parity_ratio",
            "equalized_odds_difference",
            "equal_opportunity_difference",
        )
    }
    groups = {str(g): {k: float(row[k]) for k in _FAIRLEARN_RATES} for g, row in by_group.iterrows()}
    return {"groups": groups, "gaps": gaps}


def fairness_as_dict(result: Any) -> Result:
    """Our :class:`metrics.fairness.FairnessResult` in the shape of :func:`fairlearn_fairness`."""
    groups = {
        g.group: {
            "selection_rate": g.selection_rate,
            "true_positive_rate": g.true_positive_rate,
            "false_positive_rate": g.false_positive_rate,
            "count": float(g.count),
        }
        for g in result.groups
    }
    return {"groups": groups, "gaps": dict(result.metrics)}


def ours_fairness(frame: Any) -> Result:
    from metrics.fairness import fairness

    result = fairness(
        y_pred=frame[workload.PREDICTION], y_true=frame[workload.LABEL], sensitive=frame[[workload.SENSITIVE]]
    )
    return fairness_as_dict(result)


def task_fairlearn_fairness(args: argparse.Namespace) -> Result:
    phases = Phases()
    import fairlearn.metrics  # noqa: F401

    phases.mark("import_s")
    frame = workload.load(args.current, FAIRNESS_COLUMNS)
    phases.loaded()
    result = fairlearn_fairness(frame)
    phases.mark("compute_s")
    return phases.report(result)


def task_ours_fairness(args: argparse.Namespace) -> Result:
    phases = Phases()
    import metrics.fairness  # noqa: F401

    phases.mark("import_s")
    frame = workload.load(args.current, FAIRNESS_COLUMNS)
    phases.loaded()
    result = ours_fairness(frame)
    phases.mark("compute_s")
    return phases.report(result)


def _timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def task_fairness_inprocess(args: argparse.Namespace) -> Result:
    """Both fairness paths in one warm process: imports done, each warmed up on a small slice first."""
    phases = Phases()
    from fairlearn import metrics as fm

    phases.mark("import_s")
    frame = workload.load(args.current, FAIRNESS_COLUMNS)
    phases.loaded()
    small = frame.iloc[:10_000]
    fairlearn_fairness(small)
    ours_fairness(small)
    y_true = frame[workload.LABEL].to_numpy()
    y_pred = frame[workload.PREDICTION].to_numpy()
    sensitive = frame[workload.SENSITIVE]

    def metric_frame_only() -> None:
        fm.MetricFrame(
            metrics={name: getattr(fm, name) for name in _FAIRLEARN_RATES},
            y_true=y_true,
            y_pred=y_pred,
            sensitive_features=sensitive,
        )

    result = {
        "ours_s": _timed(lambda: ours_fairness(frame), 7),
        "fairlearn_metricframe_s": _timed(metric_frame_only, args.fairlearn_repeats),
        "fairlearn_all_s": _timed(lambda: fairlearn_fairness(frame), args.fairlearn_repeats),
    }
    phases.mark("compute_s")
    return phases.report(result)


# --- the chunked window -----------------------------------------------------------------------------------


def task_chunked(args: argparse.Namespace) -> Result:
    """A whole window file through the chunked path; peak RSS is the figure that matters here."""
    phases = Phases()
    from benchmarks import chunked
    from metrics.fairness import fairness_from_counts

    phases.mark("import_s")
    reference = chunked.prepare_reference(workload.load(args.reference, workload.FEATURES))
    phases.loaded()
    states = chunked.window_states(args.current, reference)
    verdicts = chunked.judge(reference, states)
    if states.fairness is None:
        raise RuntimeError("the window had no rows")
    fair = fairness_as_dict(fairness_from_counts(states.fairness))
    phases.mark("compute_s")
    columns = {v.column: {"method": v.method, "score": v.score, "drifted": v.drifted} for v in verdicts}
    return phases.report({"rows": states.rows, "columns": columns, "fairness": fair})


def task_chunked_error(args: argparse.Namespace) -> Result:
    """The chunked path and the exact path on the first ``--sample-rows`` rows of the window."""
    phases = Phases()
    import pyarrow.parquet as pq

    from benchmarks import chunked
    from metrics.drift import PreparedReference
    from metrics.fairness import fairness_from_counts

    phases.mark("import_s")
    reference_frame = workload.load(args.reference, workload.FEATURES)
    with pq.ParquetFile(args.current, pre_buffer=False) as source:
        # Only the row groups that hold the sample: the whole window would not fit the memory budget.
        groups: list[int] = []
        covered = 0
        while covered < args.sample_rows and len(groups) < source.num_row_groups:
            covered += source.metadata.row_group(len(groups)).num_rows
            groups.append(len(groups))
        sample = source.read_row_groups(groups, columns=[*workload.FEATURES, *FAIRNESS_COLUMNS]).slice(
            0, args.sample_rows
        )
    window = sample.to_pandas()
    del sample
    phases.loaded()
    reference = chunked.prepare_reference(reference_frame)
    states = chunked.window_states(args.current, reference, rows=args.sample_rows)
    sketch = {v.column: v for v in chunked.judge(reference, states)}
    exact = PreparedReference.prepare(reference_frame, columns=workload.FEATURES, kinds=workload.KINDS).compare(
        window[workload.FEATURES]
    )
    columns = {}
    for c in exact.columns:
        s = sketch[c.column]
        columns[c.column] = {
            "exact_method": c.method,
            "sketch_method": s.method,
            "exact_score": c.score,
            "sketch_score": s.score,
            "abs_error": abs(c.score - s.score),
            "same_verdict": c.drifted == s.drifted and c.method == s.method,
        }
    if states.fairness is None:
        raise RuntimeError("the sample had no rows")
    chunked_fair = fairness_as_dict(fairness_from_counts(states.fairness))
    exact_fair = ours_fairness(window)
    phases.mark("compute_s")
    return phases.report(
        {
            "rows": states.rows,
            "columns": columns,
            "fairness_max_abs_diff": max_abs_diff(chunked_fair, exact_fair),
        }
    )


def max_abs_diff(ours: Result, theirs: Result) -> float:
    """Largest absolute difference over every group rate and gap (inf when the groups differ; nan == nan)."""
    if set(ours["groups"]) != set(theirs["groups"]) or set(ours["gaps"]) != set(theirs["gaps"]):
        return math.inf
    pairs = [(ours["gaps"][k], theirs["gaps"][k]) for k in ours["gaps"]]
    for g, rates in ours["groups"].items():
        pairs += [(rates[k], theirs["groups"][g][k]) for k in rates]
    worst = 0.0
    for a, b in pairs:
        if math.isnan(a) or math.isnan(b):
            if not (math.isnan(a) and math.isnan(b)):
                return math.inf
            continue
        worst = max(worst, abs(a - b))
    return worst


TASKS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "evidently-drift": task_evidently_drift,
    "ours-drift": task_ours_drift,
    "ours-drift-prepared": task_ours_drift_prepared,
    "fairlearn-fairness": task_fairlearn_fairness,
    "ours-fairness": task_ours_fairness,
    "fairness-inprocess": task_fairness_inprocess,
    "chunked": task_chunked,
    "chunked-error": task_chunked_error,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--current", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sample-rows", type=int, default=1_000_000)
    parser.add_argument("--fairlearn-repeats", type=int, default=1)
    args = parser.parse_args(argv)
    report = TASKS[args.task](args)
    args.out.write_text(json.dumps({"task": args.task, **report}, indent=1, allow_nan=True))


if __name__ == "__main__":
    main()
