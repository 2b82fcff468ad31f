"""Judge one window of one system: run the metrics, turn them into verdicts and Prometheus series.

The reference is prepared once per snapshot (``SystemReference``) and reused for every window. This
module calls only ``metrics/`` (pure computation); the runner does the I/O around it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from agent.decisions import State, Verdict, worst
from config.errors import MetricInputError
from config.model import PredictionKind, SystemConfig
from connectors.base import RejectedRecord
from connectors.sources.sql_pushdown import PushdownPlan, WindowAggregates
from metrics.aggregates import StateReference, WindowSummary, judge_column, judge_drift, quality_from_summary
from metrics.drift import ColumnDrift, DatasetDrift, DriftSpec, PreparedReference, column_drift, summarise
from metrics.fairness import FairnessResult, GroupStats, fairness, fairness_from_counts
from metrics.performance import classification_metrics, regression_metrics
from metrics.quality import QualityFinding, QualityReport, ReferenceProfile, data_quality
from metrics.stattests import CountSample

Series = tuple[str, dict[str, str], float]  # (family, labels without `system`, value)
log = logging.getLogger("aims.evaluate")


@dataclass(frozen=True)
class SystemReference:
    """What is kept of the reference data between windows."""

    drift: PreparedReference
    profile: ReferenceProfile
    prediction: pd.Series | None
    rows: int
    digest: str
    #: for windows judged from aggregates (SQL pushdown): edges and states of every watched column
    states: StateReference | None = None
    label_cardinality: int | None = None  # distinct labels in the reference, when it has them
    label_numeric: bool = True  # the reference's labels are numbers
    #: declared features the reference lacks: never judged for drift, so every window reports them
    missing_features: tuple[str, ...] = ()

    @classmethod
    def build(cls, system: SystemConfig, frame: pd.DataFrame, *, aggregates: bool = False) -> SystemReference:
        schema = system.schema_
        features = [c for c in schema.features if c in frame.columns]
        missing = tuple(c for c in schema.features if c not in frame.columns)
        if missing:
            log.warning("system %s: the reference data has no column %s; drift of %s cannot be judged",
                        system.id, ", ".join(missing), "it" if len(missing) == 1 else "them")
        kinds = {c: schema.features[c].value for c in features}
        prepared = PreparedReference.prepare(frame, columns=features, kinds=kinds)  # type: ignore[arg-type]
        watched = quality_columns(system)
        present = [c for c in watched if c in frame.columns]
        expected = {c: k.value for c, k in schema.features.items() if c in frame.columns}
        profile = ReferenceProfile.from_frame(frame[present], kinds=expected)  # type: ignore[arg-type]
        pred = None
        if schema.prediction and schema.prediction.column in frame.columns:
            pred = frame[schema.prediction.column].reset_index(drop=True)
        states = None
        if aggregates:
            # the other watched columns (sensitive features, the prediction) as data quality sees them
            others = {c: profile.columns[c].kind for c in present if c not in features}
            pkind = prediction_kind(system)
            if schema.prediction and schema.prediction.column in others and pkind == "numerical":
                others[schema.prediction.column] = "numerical"
            rest = PreparedReference.prepare(frame, columns=list(others), kinds=others)
            states = StateReference.from_prepared(prepared, rest)
        label = schema.label
        has_label = bool(label) and label in frame.columns
        return cls(drift=prepared, profile=profile, prediction=pred, rows=len(frame), digest=prepared.digest,
                   states=states, label_cardinality=int(frame[label].nunique()) if has_label else None,
                   label_numeric=not has_label or pd.api.types.is_numeric_dtype(frame[label]),
                   missing_features=missing)


def prediction_kind(system: SystemConfig) -> Literal["numerical", "categorical"]:
    """How the prediction's drift is judged: scores and regression outputs as numbers, classes as categories."""
    pred = system.schema_.prediction
    numeric = pred is not None and pred.kind in (PredictionKind.score, PredictionKind.regression)
    return "numerical" if numeric else "categorical"


def quality_columns(system: SystemConfig) -> list[str]:
    """Columns whose quality is judged: the model's inputs, the sensitive features and the prediction."""
    sc = system.schema_
    cols = [*sc.features, *sc.sensitive]
    if sc.prediction:
        cols.append(sc.prediction.column)
    return list(dict.fromkeys(cols))


def _bookkeeping(system: SystemConfig) -> set[str]:
    sc = system.schema_
    return {c for c in (sc.id_column, sc.timestamp_column, sc.label) if c}


@dataclass
class WindowEvaluation:
    rows: int
    verdicts: list[Verdict] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    computed_checks: set[str] = field(default_factory=set)

    @property
    def status(self) -> State:
        return worst([v.state for v in self.verdicts])


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else float(x)


def column_json(c: ColumnDrift) -> dict[str, Any]:
    return {"column": c.column, "kind": c.kind, "method": c.method, "score": _num(c.score),
            "threshold": _num(c.threshold), "drifted": bool(c.drifted), "status": c.status}


def fairness_json(r: FairnessResult) -> dict[str, Any]:
    return {
        "sensitive": r.sensitive,
        "status": r.status,
        "judged_groups": r.judged_groups,
        "groups": [
            {"group": g.group, "count": g.count, "selection_rate": _num(g.selection_rate),
             "true_positive_rate": _num(g.true_positive_rate),
             "false_positive_rate": _num(g.false_positive_rate), "judged": g.judged,
             "selection_rate_ci": [_num(x) for x in g.selection_rate_ci]}
            for g in r.groups
        ],
        "metrics": {k: _num(v) for k, v in r.metrics.items()},
        "significant": dict(r.significant),
    }


Phase = Literal["all", "predictions", "labels"]
LABEL_METRICS = {"equalized_odds_difference", "equal_opportunity_difference"}


def evaluate_window(system: SystemConfig, ref: SystemReference, df: pd.DataFrame,
                    phase: Phase = "all", rejected: Sequence[RejectedRecord] = ()) -> WindowEvaluation:
    """Judge a window. With late labels, ``predictions`` judges what needs no label at window close and
    ``labels`` judges the rest once the labels had time to arrive; ``all`` does both at once.
    ``rejected`` are the records the source skipped as unreadable: ``bad_record`` data-quality findings."""
    ev = WindowEvaluation(rows=len(df))
    checks = system.checks
    enough = len(df) >= system.window.min_rows
    ev.results["rows"] = len(df)
    ev.results["phase"] = phase
    ev.results["reference_digest"] = ref.digest
    fairness_needs_labels = checks.fairness.metric in LABEL_METRICS
    if phase != "labels":
        ev.series.append(("window_rows", {}, float(len(df))))
        if checks.data_quality.enabled:
            _quality(system, ref, df, ev, rejected)
        if checks.drift.enabled:
            _drift(system, ref, df, ev, enough)
        if checks.fairness.enabled and (phase == "all" or not fairness_needs_labels):
            _fairness(system, df, ev, enough, use_labels=phase == "all")
    if phase != "predictions":
        label = system.schema_.label
        labelled = int(df[label].notna().sum()) if label and label in df.columns else 0
        ev.results["labelled_rows"] = labelled
        ev.series.append(("window_labelled_rows", {}, float(labelled)))
        if checks.fairness.enabled and phase == "labels" and fairness_needs_labels:
            _fairness(system, df, ev, enough, use_labels=True)
        if checks.performance.enabled:
            _performance(system, df, ev)
    return ev


def _insufficient(check: str, subject: str, why: str) -> Verdict:
    return Verdict(check, subject, "insufficient_data", summary=why)


def _rejected_finding(rejected: Sequence[RejectedRecord], rows: int) -> QualityFinding:
    n = sum(r.count for r in rejected)
    shown = "; ".join(f"{r.record}: {r.reason}" for r in rejected[:3])
    more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
    return QualityFinding("bad_record", "(record)", n, n / (rows + n),
                          f"{n} record(s) could not be read and were left out: {shown}{more}")


def _quality(system: SystemConfig, ref: SystemReference, df: pd.DataFrame, ev: WindowEvaluation,
             rejected: Sequence[RejectedRecord] = ()) -> None:
    if df.empty and not rejected:
        ev.verdicts.append(_insufficient("data_quality", "dataset", "no rows in the window"))
        return
    skip = _bookkeeping(system)
    report = (data_quality(df[[c for c in df.columns if c not in skip]], ref.profile) if not df.empty
              else QualityReport(rows=0, findings=[], missing_share={}))
    _quality_verdict(system, report, ev, rejected, ref.missing_features)


def _quality_verdict(system: SystemConfig, report: QualityReport, ev: WindowEvaluation,
                     rejected: Sequence[RejectedRecord] = (), missing_features: Sequence[str] = ()) -> None:
    cfg = system.checks.data_quality
    all_findings = [*report.findings, *([_rejected_finding(rejected, report.rows)] if rejected else [])]
    ev.computed_checks.add("data_quality")
    findings: list[dict[str, Any]] = [
        {"kind": f.kind, "column": f.column, "count": f.count, "share": f.share, "detail": f.detail}
        for f in all_findings]
    # a declared feature the reference lacks is not a problem of this window's rows, but it leaves the
    # feature unmonitored: say so every window until the reference (or the schema) is fixed
    findings += [{"kind": "missing_in_reference", "column": c, "count": 0, "share": 0.0,
                  "detail": "declared in schema.features but not a column of the reference data: drift is not "
                            "judged"} for c in missing_features]
    ev.results["data_quality"] = {"rows": report.rows, "findings": findings,
                                  "missing_share": {k: _num(v) for k, v in report.missing_share.items()}}
    if rejected:
        ev.results["data_quality"]["rejected"] = [{"record": r.record, "reason": r.reason, "count": r.count}
                                                  for r in rejected[:100]]
    limits = {"missing": cfg.max_missing_share, "out_of_range": cfg.max_out_of_range_share,
              "unseen_category": cfg.max_unseen_category_share, "type_error": cfg.max_type_error_share,
              "non_finite": cfg.max_type_error_share, "bad_record": cfg.max_type_error_share}
    worst_ratio, problems = 0.0, []
    for f in findings:
        limit = limits.get(f["kind"])
        breached = (f["kind"] in ("missing_column", "dtype_change", "missing_in_reference")
                    or (limit is not None and f["share"] > limit))
        if breached:
            problems.append(f"{f['column']}: {f['detail']}")
            ratio = f["share"] / limit if limit else 10.0
            worst_ratio = max(worst_ratio, ratio)
    for col, share in report.missing_share.items():
        ev.series.append(("data_quality_missing_share", {"feature": col}, float(share)))
    by_kind: dict[str, int] = {}
    for finding in all_findings:
        by_kind[finding.kind] = by_kind.get(finding.kind, 0) + finding.count
    by_kind["missing_in_reference"] = len(missing_features)
    for kind in ("missing", "type_error", "out_of_range", "unseen_category", "missing_column", "new_column",
                 "dtype_change", "non_finite", "bad_record", "missing_in_reference"):
        ev.series.append(("data_quality_findings", {"kind": kind}, float(by_kind.get(kind, 0))))
    state: State = "breach" if problems else "ok"
    summary = "; ".join(problems[:10]) if problems else "no data-quality problem above the limits"
    ev.verdicts.append(Verdict("data_quality", "dataset", state, value=worst_ratio or 0.0, threshold=1.0,
                               summary=summary, detail={"findings": findings[:100]}))


def _drift(system: SystemConfig, ref: SystemReference, df: pd.DataFrame, ev: WindowEvaluation,
           enough: bool) -> None:
    cfg = system.checks.drift
    if not enough:
        _drift_insufficient(system, f"{len(df)} rows, fewer than window.min_rows={system.window.min_rows}", ev)
        return
    spec = _drift_spec(system)
    present = [c for c in ref.drift.columns if c in df.columns]
    # values that are not numbers are counted as type errors by the data-quality check; drift is judged on
    # the values that are
    current = _numeric_columns(ref, df[present])
    result = ref.drift.compare(current, spec, columns=present) if present else None
    _drift_verdict(result, ev)
    pred = system.schema_.prediction
    if cfg.prediction and pred and ref.prediction is not None:
        if pred.column not in df.columns:
            ev.verdicts.append(_insufficient("prediction_drift", pred.column, "no prediction column in window"))
            return
        kind = prediction_kind(system)
        pred_values = df[pred.column].reset_index(drop=True)
        if kind == "numerical" and not pd.api.types.is_numeric_dtype(pred_values):
            pred_values = pd.to_numeric(pred_values, errors="coerce")
        _prediction_verdict(column_drift(ref.prediction, pred_values, column=pred.column,
                                         kind=kind, method=cfg.per_column.get(pred.column, cfg.method),
                                         threshold=cfg.per_column_threshold.get(pred.column, cfg.threshold)), ev)


def _drift_spec(system: SystemConfig) -> DriftSpec:
    cfg = system.checks.drift
    return DriftSpec(method=cfg.method, threshold=cfg.threshold, per_column_method=cfg.per_column,
                     per_column_threshold=cfg.per_column_threshold, drift_share=cfg.drift_share,
                     fdr_alpha=cfg.fdr_alpha)


def _drift_verdict(result: DatasetDrift | None, ev: WindowEvaluation) -> None:
    ev.computed_checks.add("drift")
    if result is None:
        ev.verdicts.append(_insufficient("drift", "dataset", "none of the reference's features is in the window"))
        return
    cols = [column_json(c) for c in result.columns]
    judged = [c for c in result.columns if c.status == "ok"]
    ev.results["drift"] = {"columns": cols, "drifted_count": result.drifted_count, "share": result.share,
                           "dataset_drift": result.dataset_drift, "drift_share": result.drift_share}
    for c in result.columns:
        if c.status != "ok":
            continue
        ev.series.append(("feature_drift_score", {"feature": c.column, "method": c.method}, float(c.score)))
        ev.series.append(("feature_drift_detected", {"feature": c.column}, 1.0 if c.drifted else 0.0))
    ev.series.append(("dataset_drift_share", {}, float(result.share)))
    ev.series.append(("dataset_drift_detected", {}, 1.0 if result.dataset_drift else 0.0))
    state: State = "breach" if result.dataset_drift else ("warning" if result.drifted_count else "ok")
    if not judged:
        state = "insufficient_data"
    drifted = [c.column for c in result.columns if c.drifted]
    summary = (f"{result.drifted_count} of {len(judged)} columns drifted"
               + (f": {', '.join(drifted[:10])}" if drifted else ""))
    ev.verdicts.append(Verdict("drift", "dataset", state, value=result.share, threshold=result.drift_share,
                               summary=summary,
                               detail={"columns": cols, "drifted_count": result.drifted_count,
                                       "judged_count": len(judged), "drifted": drifted}))


def _prediction_verdict(pd_res: ColumnDrift, ev: WindowEvaluation) -> None:
    ev.results["prediction_drift"] = column_json(pd_res)
    if pd_res.status != "ok":
        ev.verdicts.append(_insufficient("prediction_drift", pd_res.column, "no usable predictions"))
        return
    ev.series.append(("prediction_drift_score", {"method": pd_res.method}, float(pd_res.score)))
    ev.series.append(("prediction_drift_detected", {}, 1.0 if pd_res.drifted else 0.0))
    ev.verdicts.append(Verdict(
        "prediction_drift", pd_res.column, "breach" if pd_res.drifted else "ok", value=_num(pd_res.score),
        threshold=pd_res.threshold, summary=f"{pd_res.method} score {pd_res.score:.4g}",
        detail={"method": pd_res.method, "floor": pd_res.is_p_value}))


def _binary_inputs(system: SystemConfig, df: pd.DataFrame) -> tuple[pd.Series, object, float | None]:
    pred = system.schema_.prediction
    assert pred is not None
    threshold = pred.threshold if pred.kind is PredictionKind.score else None
    return df[pred.column], pred.pos_label, threshold


def _fairness(system: SystemConfig, df: pd.DataFrame, ev: WindowEvaluation, enough: bool, *,
              use_labels: bool) -> None:
    cfg = system.checks.fairness
    pred = system.schema_.prediction
    assert pred is not None
    label = system.schema_.label
    out: list[dict[str, Any]] = []
    for spec in cfg.sensitive:
        parts = spec.split("+")
        missing = [c for c in [*parts, pred.column] if c not in df.columns]
        if not enough or missing:
            why = f"missing columns {missing}" if missing else f"{len(df)} rows, fewer than window.min_rows"
            ev.verdicts.append(_insufficient("fairness", spec, why))
            continue
        y_pred, pos, thr = _binary_inputs(system, df)
        has_labels = use_labels and label and label in df.columns and df[label].notna().any()
        y_true = df[label] if has_labels else None
        if y_true is not None and label:
            keep = df[label].notna().to_numpy()
            res = fairness(y_pred=y_pred[keep].reset_index(drop=True),
                           sensitive=df.loc[keep, parts].reset_index(drop=True),
                           y_true=y_true[keep].reset_index(drop=True), pos_label=pos, threshold=thr,
                           min_group_size=cfg.min_group_size)
        else:
            res = fairness(y_pred=y_pred.reset_index(drop=True), sensitive=df[parts].reset_index(drop=True),
                           pos_label=pos, threshold=thr, min_group_size=cfg.min_group_size)
        _fairness_verdict(system, spec, res, ev, out)
    if out:
        ev.results["fairness"] = out


def _fairness_verdict(system: SystemConfig, spec: str, res: FairnessResult, ev: WindowEvaluation,
                      out: list[dict[str, Any]]) -> None:
    cfg = system.checks.fairness
    ev.computed_checks.add("fairness")
    rj = fairness_json(res)
    out.append(rj)
    for name, gap in res.metrics.items():
        if _num(gap) is not None:
            ev.series.append(("fairness_metric", {"sensitive": spec, "metric": name}, float(gap)))
    for g in res.groups:
        ev.series.append(("fairness_group_count", {"sensitive": spec, "group": g.group}, float(g.count)))
        for m in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            rate = _num(getattr(g, m))
            if rate is not None:
                ev.series.append(("fairness_group_rate", {"sensitive": spec, "group": g.group, "metric": m},
                                  rate))
    value = _num(res.metrics.get(cfg.metric))
    if res.status != "ok" or value is None:
        ev.verdicts.append(_insufficient("fairness", spec, f"{res.judged_groups} groups of at least "
                                         f"{cfg.min_group_size} rows (or no labels for {cfg.metric})"))
        return
    is_ratio = cfg.metric == "demographic_parity_ratio"
    over = value < cfg.threshold if is_ratio else value > cfg.threshold
    significant = res.significant.get(cfg.metric, True)
    state: State = "breach" if over and (significant or not cfg.require_significance) else (
        "warning" if over else "ok")
    judged = [g for g in res.groups if g.judged]
    rates = sorted(judged, key=lambda g: g.selection_rate)
    affected = rates[0].group if rates else "?"
    groups = affected_groups(cfg.metric, cfg.threshold, judged) or ([affected] if rates else [])
    ev.verdicts.append(Verdict(
        "fairness", spec, state, value=value, threshold=cfg.threshold,
        summary=f"{cfg.metric} {value:.3f} (threshold {cfg.threshold})"
                + ("" if significant else "; not statistically significant"),
        detail={"metric": cfg.metric, "affected": affected, "affected_groups": groups,
                "affected_count": len(groups),
                "groups": rj["groups"], "significant": significant, "floor": is_ratio}))


def affected_groups(metric: str, threshold: float, judged: list[GroupStats]) -> list[str]:
    """The judged groups on the wrong side of the gap, worst first: a selection rate (or, for the
    error-rate metrics, a true positive rate) more than ``threshold`` below the best group's, a false
    positive rate more than ``threshold`` above the lowest (equalized odds), or a selection-rate ratio
    to the best group under ``threshold`` (demographic parity ratio)."""
    def rates(attr: str) -> list[tuple[str, float]]:
        return [(str(g.group), float(v)) for g in judged if (v := _num(getattr(g, attr))) is not None]

    gaps: dict[str, float] = {}
    if metric.startswith("demographic_parity"):
        sel = rates("selection_rate")
        best = max((r for _, r in sel), default=0.0)
        for group, r in sel:
            if metric == "demographic_parity_ratio":
                if best > 0 and r / best < threshold:
                    gaps[group] = 1 - r / best
            elif best - r > threshold:
                gaps[group] = best - r
    else:
        tpr = rates("true_positive_rate")
        best = max((r for _, r in tpr), default=0.0)
        for group, r in tpr:
            if best - r > threshold:
                gaps[group] = best - r
        if metric == "equalized_odds_difference":
            fpr = rates("false_positive_rate")
            low = min((r for _, r in fpr), default=0.0)
            for group, r in fpr:
                if r - low > threshold:
                    gaps[group] = max(gaps.get(group, 0.0), r - low)
    return sorted(gaps, key=lambda g: -gaps[g])


def _performance(system: SystemConfig, df: pd.DataFrame, ev: WindowEvaluation) -> None:
    cfg = system.checks.performance
    pred, label = system.schema_.prediction, system.schema_.label
    assert pred is not None and label is not None
    if label not in df.columns or pred.column not in df.columns:
        ev.verdicts.append(_insufficient("performance", cfg.metric, "no label or prediction column"))
        return
    labelled = df[df[label].notna() & df[pred.column].notna()]
    if len(labelled) < cfg.min_labels:
        ev.verdicts.append(_insufficient("performance", cfg.metric,
                                         f"{len(labelled)} labelled rows, fewer than min_labels={cfg.min_labels}"))
        return
    if pred.kind is PredictionKind.regression:
        values = regression_metrics(y_true=labelled[label], y_pred=labelled[pred.column])
    elif pred.kind is PredictionKind.score:
        scores = labelled[pred.column].astype(float)
        negative = _neg(labelled[label], pred.pos_label)
        classes = pd.Series(scores >= pred.threshold).map({True: pred.pos_label, False: negative})
        values = classification_metrics(y_true=labelled[label], y_pred=classes, y_score=scores,
                                        pos_label=pred.pos_label)
    else:
        values = classification_metrics(y_true=labelled[label], y_pred=labelled[pred.column],
                                         pos_label=pred.pos_label)
    ev.computed_checks.add("performance")
    ev.results["performance"] = {k: _num(v) for k, v in values.items()}
    for k, v in values.items():
        if k != "count" and _num(v) is not None:
            ev.series.append(("performance_metric", {"metric": k}, float(v)))
    value = _num(values.get(cfg.metric))
    if value is None:
        ev.verdicts.append(_insufficient("performance", cfg.metric, f"{cfg.metric} is undefined on this window"))
        return
    low = cfg.min is not None and value < cfg.min
    high = cfg.max is not None and value > cfg.max
    bound, threshold = ("minimum", cfg.min) if cfg.min is not None else ("maximum", cfg.max)
    if high:
        bound, threshold = "maximum", cfg.max
    ev.verdicts.append(Verdict(
        "performance", cfg.metric, "breach" if (low or high) else "ok", value=value, threshold=threshold,
        summary=f"{cfg.metric} {value:.4f} ({bound} {threshold})",
        detail={"bound": bound, "labels": len(labelled), "floor": bound == "minimum"}))


def _neg(labels: pd.Series, pos: object) -> object:
    others = [v for v in pd.unique(labels.dropna()) if v != pos]
    return others[0] if others else (0 if pos == 1 else f"not {pos}")


# --- windows judged from aggregates (SQL pushdown) --------------------------------------------------------

ReadColumns = Callable[[Sequence[str]], pd.DataFrame]


def pushdown_plan(system: SystemConfig, ref: SystemReference, present: Sequence[str],
                  phase: Phase = "all") -> PushdownPlan:
    """What the database must aggregate for one window of ``system`` (see :func:`evaluate_aggregates`)."""
    states = ref.states
    if states is None:
        raise MetricInputError(f"system {system.id}: the reference was not prepared for aggregates")
    have = set(present)
    watched = [c for c in quality_columns(system) if c in have and c in ref.profile.columns]
    numerical: dict[str, Any] = {}
    categorical: list[str] = []
    for c in watched:
        if ref.profile.columns[c].kind == "numerical" or states.kinds.get(c) == "numerical":
            # a column with no usable reference value still has its missing values counted
            numerical[c] = states.numeric[c].edges if c in states.numeric else np.array([0.0, 1.0])
        else:
            categorical.append(c)
    cfg = system.checks.fairness
    pred = system.schema_.prediction
    fair: list[list[str]] = []
    label = None
    if cfg.enabled and pred is not None and pred.column in have and phase != "labels" and (
            phase == "all" or cfg.metric not in LABEL_METRICS):
        fair = [spec.split("+") for spec in cfg.sensitive if all(p in have for p in spec.split("+"))]
        if phase == "all" and system.schema_.label in have:
            label = system.schema_.label
    label_column = system.schema_.label
    if phase == "all" and label_column and label_column in have and label_column not in numerical:
        # counted for the number of labelled rows (its missing values), not judged
        if ref.label_numeric:
            numerical[label_column] = np.array([0.0, 1.0])
        elif label_column not in categorical:
            categorical.append(label_column)
    cardinality = {c: s.nunique for c, s in states.samples.items() if isinstance(s, CountSample)}
    if label is not None and ref.label_cardinality is not None:
        cardinality[label] = ref.label_cardinality
    threshold = pred.threshold if pred is not None and pred.kind is PredictionKind.score else None
    return PushdownPlan(numerical=numerical, categorical=categorical, fairness=fair,
                        prediction=pred.column if pred is not None and fair else None, label=label,
                        pos_label=pred.pos_label if pred is not None else 1, threshold=threshold,
                        cardinality=cardinality)


def evaluate_aggregates(system: SystemConfig, ref: SystemReference, agg: WindowAggregates,
                        present: Sequence[str], read: ReadColumns, phase: Phase = "all") -> WindowEvaluation:
    """Judge a window from the aggregates of :func:`pushdown_plan`, as :func:`evaluate_window` judges its rows.

    Drift tests that need every value, and performance (which needs each prediction with its label), read
    just those columns through ``read``. The labels phase of late ground truth is judged on rows.
    """
    if phase == "labels":
        raise MetricInputError("the labels phase is judged on rows, not aggregates")
    assert ref.states is not None
    ev = WindowEvaluation(rows=agg.rows)
    checks = system.checks
    enough = agg.rows >= system.window.min_rows
    ev.results.update({"rows": agg.rows, "phase": phase, "reference_digest": ref.digest, "aggregated": True})
    skip = _bookkeeping(system)
    window = WindowSummary(rows=agg.rows, present=[c for c in present if c not in skip], columns=agg.columns)
    ev.series.append(("window_rows", {}, float(agg.rows)))
    if checks.data_quality.enabled:
        if agg.rows == 0:
            ev.verdicts.append(_insufficient("data_quality", "dataset", "no rows in the window"))
        else:
            _quality_verdict(system, quality_from_summary(window, ref.profile), ev,
                             missing_features=ref.missing_features)
    if checks.drift.enabled:
        _drift_from_aggregates(system, ref, ref.states, window, read, ev, enough)
    needs_labels = checks.fairness.metric in LABEL_METRICS
    if checks.fairness.enabled and (phase == "all" or not needs_labels):
        out: list[dict[str, Any]] = []
        for spec in checks.fairness.sensitive:
            counts = agg.fairness.get(spec)
            unlabelled = agg.fairness_unlabelled.get(spec)
            if not enough or counts is None:
                why = f"{agg.rows} rows, fewer than window.min_rows" if counts is not None else "missing columns"
                ev.verdicts.append(_insufficient("fairness", spec, why))
                continue
            if counts.labelled and not counts.counts.sum() and unlabelled is not None:
                counts = unlabelled  # no label in the window yet: judged on predictions, as on rows
            _fairness_verdict(system, spec, fairness_from_counts(counts, min_group_size=checks.fairness.min_group_size),
                              ev, out)
        if out:
            ev.results["fairness"] = out
    if phase == "all":
        label, pred = system.schema_.label, system.schema_.prediction
        summary = agg.columns.get(label) if label else None
        labelled = agg.rows - summary.missing if summary is not None else 0
        ev.results["labelled_rows"] = labelled
        ev.series.append(("window_labelled_rows", {}, float(labelled)))
        if checks.performance.enabled and label is not None and pred is not None:
            # each prediction with its label: the two columns travel, the features do not
            pair = [pred.column, label]
            _performance(system, read(pair) if labelled else pd.DataFrame(columns=pair), ev)
    return ev


def _drift_from_aggregates(system: SystemConfig, ref: SystemReference, states: StateReference,
                           window: WindowSummary, read: ReadColumns, ev: WindowEvaluation, enough: bool) -> None:
    cfg = system.checks.drift
    pred = system.schema_.prediction
    if not enough:
        _drift_insufficient(system, f"{window.rows} rows, fewer than window.min_rows={system.window.min_rows}", ev)
        return
    spec = _drift_spec(system)
    present = set(window.present)
    columns = [c for c in ref.drift.columns if c in present]
    judged, need = judge_drift(states, window, spec, columns)
    if need:
        # judged on their values, without false-alarm control yet: summarise() applies it to all columns
        exact = ref.drift.compare(_numeric_columns(ref, read(need)), replace(spec, fdr_alpha=None), columns=need)
        judged += exact.columns
    order = {c: i for i, c in enumerate(columns)}
    _drift_verdict(summarise(sorted(judged, key=lambda c: order[c.column]), spec) if columns else None, ev)
    if not (cfg.prediction and pred and ref.prediction is not None):
        return
    if pred.column not in present or pred.column not in states.kinds:
        ev.verdicts.append(_insufficient("prediction_drift", pred.column, "no prediction column in window"))
        return
    kind = prediction_kind(system)
    method = cfg.per_column.get(pred.column, cfg.method)
    threshold = cfg.per_column_threshold.get(pred.column, cfg.threshold)
    verdict = judge_column(states, window, pred.column, kind=kind, method=method, threshold=threshold)
    if verdict is None:
        values = read([pred.column])[pred.column].reset_index(drop=True)
        if kind == "numerical" and not pd.api.types.is_numeric_dtype(values):
            values = pd.to_numeric(values, errors="coerce")
        verdict = column_drift(ref.prediction, values, column=pred.column, kind=kind, method=method,
                               threshold=threshold)
    _prediction_verdict(verdict, ev)


def _numeric_columns(ref: SystemReference, frame: pd.DataFrame) -> pd.DataFrame:
    """Values that are not numbers in numerical columns become NaN (data quality counts them)."""
    out = frame.copy()
    for name in out.columns:
        if ref.drift.kinds.get(name) == "numerical" and not pd.api.types.is_numeric_dtype(out[name]):
            out[name] = pd.to_numeric(out[name], errors="coerce")
    return out


def _drift_insufficient(system: SystemConfig, why: str, ev: WindowEvaluation) -> None:
    ev.verdicts.append(_insufficient("drift", "dataset", why))
    if system.checks.drift.prediction and system.schema_.prediction:
        ev.verdicts.append(_insufficient("prediction_drift", system.schema_.prediction.column, why))
