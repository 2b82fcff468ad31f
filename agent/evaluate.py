"""Judge one window of one system: run the metrics, turn them into verdicts and Prometheus series.

The reference is prepared once per snapshot (``SystemReference``) and reused for every window. This
module calls only ``metrics/`` (pure computation); the runner does the I/O around it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from agent.decisions import State, Verdict, worst
from config.model import PredictionKind, SystemConfig
from metrics.drift import ColumnDrift, DriftSpec, PreparedReference, column_drift
from metrics.fairness import FairnessResult, fairness
from metrics.performance import classification_metrics, regression_metrics
from metrics.quality import QualityReport, ReferenceProfile, data_quality

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
    #: declared features the reference lacks: never judged for drift, so every window reports them
    missing_features: tuple[str, ...] = ()

    @classmethod
    def build(cls, system: SystemConfig, frame: pd.DataFrame) -> SystemReference:
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
        return cls(drift=prepared, profile=profile, prediction=pred, rows=len(frame), digest=prepared.digest,
                   missing_features=missing)


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


def labels_delayed(system: SystemConfig) -> bool:
    """Whether label-based checks wait for late ground truth (a second, later judgment of each window)."""
    lab = system.labels
    return lab is not None and (lab.source is not None or lab.max_delay.total_seconds() > 0)


def evaluate_window(system: SystemConfig, ref: SystemReference, df: pd.DataFrame,
                    phase: Phase = "all") -> WindowEvaluation:
    """Judge a window. With late labels, ``predictions`` judges what needs no label at window close and
    ``labels`` judges the rest once the labels had time to arrive; ``all`` does both at once."""
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
            _quality(system, ref, df, ev)
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


def _quality(system: SystemConfig, ref: SystemReference, df: pd.DataFrame, ev: WindowEvaluation) -> None:
    cfg = system.checks.data_quality
    if df.empty:
        ev.verdicts.append(_insufficient("data_quality", "dataset", "no rows in the window"))
        return
    skip = _bookkeeping(system)
    report: QualityReport = data_quality(df[[c for c in df.columns if c not in skip]], ref.profile)
    ev.computed_checks.add("data_quality")
    findings: list[dict[str, Any]] = [
        {"kind": f.kind, "column": f.column, "count": f.count, "share": f.share, "detail": f.detail}
        for f in report.findings]
    # a declared feature the reference lacks is not a problem of this window's rows, but it leaves the
    # feature unmonitored: say so every window until the reference (or the schema) is fixed
    findings += [{"kind": "missing_in_reference", "column": c, "count": 0, "share": 0.0,
                  "detail": "declared in schema.features but not a column of the reference data: drift is not "
                            "judged"} for c in ref.missing_features]
    ev.results["data_quality"] = {"rows": report.rows, "findings": findings,
                                  "missing_share": {k: _num(v) for k, v in report.missing_share.items()}}
    limits = {"missing": cfg.max_missing_share, "out_of_range": cfg.max_out_of_range_share,
              "unseen_category": cfg.max_unseen_category_share, "type_error": cfg.max_type_error_share,
              "non_finite": cfg.max_type_error_share}
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
    for finding in report.findings:
        by_kind[finding.kind] = by_kind.get(finding.kind, 0) + finding.count
    by_kind["missing_in_reference"] = len(ref.missing_features)
    for kind in ("missing", "type_error", "out_of_range", "unseen_category", "missing_column", "new_column",
                 "dtype_change", "non_finite", "missing_in_reference"):
        ev.series.append(("data_quality_findings", {"kind": kind}, float(by_kind.get(kind, 0))))
    state: State = "breach" if problems else "ok"
    summary = "; ".join(problems[:10]) if problems else "no data-quality problem above the limits"
    ev.verdicts.append(Verdict("data_quality", "dataset", state, value=worst_ratio or 0.0, threshold=1.0,
                               summary=summary, detail={"findings": findings[:100]}))


def _drift(system: SystemConfig, ref: SystemReference, df: pd.DataFrame, ev: WindowEvaluation,
           enough: bool) -> None:
    cfg = system.checks.drift
    if not enough:
        why = f"{len(df)} rows, fewer than window.min_rows={system.window.min_rows}"
        ev.verdicts.append(_insufficient("drift", "dataset", why))
        if cfg.prediction and system.schema_.prediction:
            ev.verdicts.append(_insufficient("prediction_drift", system.schema_.prediction.column, why))
        return
    spec = DriftSpec(method=cfg.method, threshold=cfg.threshold, per_column_method=cfg.per_column,
                     per_column_threshold=cfg.per_column_threshold, drift_share=cfg.drift_share,
                     fdr_alpha=cfg.fdr_alpha)
    present = [c for c in ref.drift.columns if c in df.columns]
    current = df[present].copy()
    for name in present:
        if ref.drift.kinds.get(name) == "numerical" and not pd.api.types.is_numeric_dtype(current[name]):
            # values that are not numbers are counted as type errors by the data-quality check; drift is
            # judged on the values that are
            current[name] = pd.to_numeric(current[name], errors="coerce")
    result = ref.drift.compare(current, spec) if present else None
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
    pred = system.schema_.prediction
    if cfg.prediction and pred and ref.prediction is not None:
        if pred.column not in df.columns:
            ev.verdicts.append(_insufficient("prediction_drift", pred.column, "no prediction column in window"))
            return
        numeric = pred.kind in (PredictionKind.score, PredictionKind.regression)
        kind: Literal["numerical", "categorical"] = "numerical" if numeric else "categorical"
        pred_values = df[pred.column].reset_index(drop=True)
        if numeric and not pd.api.types.is_numeric_dtype(pred_values):
            pred_values = pd.to_numeric(pred_values, errors="coerce")
        pd_res = column_drift(ref.prediction, pred_values, column=pred.column,
                              kind=kind, method=cfg.per_column.get(pred.column, cfg.method),
                              threshold=cfg.per_column_threshold.get(pred.column, cfg.threshold))
        ev.results["prediction_drift"] = column_json(pd_res)
        if pd_res.status != "ok":
            ev.verdicts.append(_insufficient("prediction_drift", pred.column, "no usable predictions"))
            return
        ev.series.append(("prediction_drift_score", {"method": pd_res.method}, float(pd_res.score)))
        ev.series.append(("prediction_drift_detected", {}, 1.0 if pd_res.drifted else 0.0))
        ev.verdicts.append(Verdict(
            "prediction_drift", pred.column, "breach" if pd_res.drifted else "ok", value=_num(pd_res.score),
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
    out = []
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
            continue
        is_ratio = cfg.metric == "demographic_parity_ratio"
        over = value < cfg.threshold if is_ratio else value > cfg.threshold
        significant = res.significant.get(cfg.metric, True)
        state: State = "breach" if over and (significant or not cfg.require_significance) else (
            "warning" if over else "ok")
        judged = [g for g in res.groups if g.judged]
        rates = sorted(judged, key=lambda g: g.selection_rate)
        affected = rates[0].group if rates else "?"
        ev.verdicts.append(Verdict(
            "fairness", spec, state, value=value, threshold=cfg.threshold,
            summary=f"{cfg.metric} {value:.3f} (threshold {cfg.threshold})"
                    + ("" if significant else "; not statistically significant"),
            detail={"metric": cfg.metric, "affected": affected, "affected_groups": [affected],
                    "groups": rj["groups"], "significant": significant, "floor": is_ratio}))
    if out:
        ev.results["fairness"] = out


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
