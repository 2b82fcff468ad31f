"""``aims-agent compare REFERENCE CURRENT``: drift, fairness and performance between two files, no config.

The JSON output is a contract others script against (PRODUCT.md): fields may be added, never change
meaning. Exit status: 0 nothing breached, 1 drift or a fairness/performance breach, 2 bad input.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path
from typing import Any

FAIRNESS_LIMITS = {"demographic_parity_difference": 0.1, "equalized_odds_difference": 0.1,
                   "equal_opportunity_difference": 0.1}
#: Largest acceptable worsening of the performance metric, in its own units (documented default).
PERFORMANCE_DROP = 0.05
DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2"}
#: Metrics where lower is better: "worse" is a rise.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "rmse"})
#: Integer or space-free string columns with every value distinct in both files (and at least this
#: many values on each side) are row identifiers, left out of the default drift columns: new ids are
#: not drift.
ID_LIKE_MIN_ROWS = 50
CI_LEVEL = 0.95


def add_arguments(p: argparse.ArgumentParser) -> None:
    from agent.arguments import finite, non_negative, open_unit, positive, positive_int, share

    p.add_argument("reference", help="reference data: Parquet, CSV or JSON Lines")
    p.add_argument("current", help="current data: Parquet, CSV or JSON Lines")
    p.add_argument("--prediction", help="prediction column (class label, score or regression value)")
    p.add_argument("--label", help="ground-truth column")
    p.add_argument("--sensitive", action="append", default=[], metavar="COL",
                   help="sensitive feature (repeat; A+B for an intersection)")
    p.add_argument("--pos-label", help="positive class of label and prediction (default 1); must match a value")
    p.add_argument("--threshold", type=finite, default=0.5, help="binarise score predictions here (default 0.5)")
    p.add_argument("--columns", help="comma-separated columns to test for drift")
    p.add_argument("--categorical", help="comma-separated columns to treat as categorical")
    p.add_argument("--numerical", help="comma-separated columns to treat as numerical")
    p.add_argument("--drift-method", default="auto", help="auto or an evidently stattest name")
    p.add_argument("--drift-threshold", type=positive, help="threshold for the drift method (default: its own)")
    p.add_argument("--drift-share", type=share, default=0.5,
                   help="share of drifted columns for dataset drift, in (0, 1] (default 0.5)")
    p.add_argument("--fdr-alpha", type=open_unit, help="judge the p-value columns together with "
                   "Benjamini-Hochberg at this false discovery rate (e.g. 0.05)")
    p.add_argument("--fairness-threshold", type=share, default=0.1, help="largest acceptable gap (default 0.1)")
    p.add_argument("--min-group-size", type=positive_int, default=30, help="smaller groups are shown but not judged")
    p.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                   help="what the prediction is (default: inferred from the label, see docs/compare.md)")
    p.add_argument("--performance-metric", help="the metric judged for a breach (default accuracy; r2 for "
                   "regression)")
    p.add_argument("--performance-drop", type=non_negative, default=PERFORMANCE_DROP,
                   help=f"largest acceptable worsening of that metric against the reference, in its units "
                   f"(default {PERFORMANCE_DROP})")
    p.add_argument("--format", choices=["json", "text", "html"], default="text")
    p.add_argument("-o", "--output", help="write the report here instead of stdout")


def _split(v: str | None) -> list[str]:
    return [c.strip() for c in v.split(",") if c.strip()] if v else []


def _family(series: Any) -> str | None:
    """What a column holds, as far as comparing two files goes; None when it holds no value at all."""
    import pandas as pd

    values = series.dropna()
    if values.empty:
        return None
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "date-time"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("string", "categorical") and not isinstance(dtype, pd.CategoricalDtype):
        return "text"
    if isinstance(dtype, pd.CategoricalDtype):
        return _family(values.astype(object))
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    if inferred == "boolean":
        return "boolean"
    if inferred in ("datetime", "datetime64", "date", "timedelta", "timedelta64", "time"):
        return "date-time"
    return "mixed"


def _same_family(column: str, ref: Any, cur: Any, role: str = "column") -> None:
    """Both files must hold the same kind of values in a column, or the comparison means nothing."""
    from config.errors import InputError

    a, b = _family(ref), _family(cur)
    if a is None or b is None or a == b or {a, b} == {"text", "mixed"}:
        return
    raise InputError(f"{role} {column!r} holds {a} values in the reference but {b} values in the current file "
                     f"(dtype {ref.dtype} vs {cur.dtype}); fix the file or leave the column out")


def _is_id_like(ref: Any, cur: Any) -> bool:
    """Row identifiers: integers, or strings without spaces, with every value distinct in each file."""
    import pandas as pd

    for s in (ref, cur):
        values = s.dropna()
        if len(values) < ID_LIKE_MIN_ROWS or values.nunique() != len(values):
            return False
        if pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            continue
        # free text is also mostly distinct, but has spaces; an id ("req-000123", a UUID) has none
        if _family(s) != "text" or values.astype(str).str.contains(r"\s", regex=True).any():
            return False
    return True


def _pos_label(raw: str | None, label: str | None, prediction: str | None, frames: list[Any],
               score_prediction: bool) -> object:
    """The positive class. `--pos-label 1` matches integer, float, boolean or string columns alike; a
    positive class that matches no value of the label (or of a class-label prediction) is bad input."""
    from config.errors import InputError

    values: list[object] = []
    columns = [c for c in (label, None if score_prediction else prediction) if c]
    for column in columns:
        for df in frames:
            values.extend(df[column].dropna().unique()[:1000].tolist())
    wanted = "1" if raw is None else raw
    for v in values:
        if str(v) == wanted or (isinstance(v, bool | float | int) and _num_eq(v, wanted)):
            return v
    distinct = list(dict.fromkeys(str(v) for v in values))
    if raw is not None and values:
        raise InputError(f"--pos-label {raw!r} matches no value of {' or '.join(columns)} "
                         f"(values: {', '.join(distinct[:5])}{', ...' if len(distinct) > 5 else ''})")
    if raw is None and len(distinct) >= 2:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        raise InputError(f"the positive class defaults to 1, which matches no value of {' or '.join(columns)} "
                         f"(values: {', '.join(distinct[:5])}{', ...' if len(distinct) > 5 else ''}); "
                         "name it with --pos-label" + (", or give --task regression for a numeric target"
                                                       if numbers else ""))
    return 1 if raw is None else raw


def _num_eq(v: object, raw: str) -> bool:
    try:
        return float(raw) == float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _require(col: str, frames: list[tuple[str, Any]]) -> None:
    from config.errors import InputError

    for name, df in frames:
        if col not in df.columns:
            raise InputError(f"column {col!r} is not in the {name} file")


def _drift_columns(args: argparse.Namespace, ref: Any, cur: Any, special: set[str]) -> tuple[list[str], list[
        dict[str, str]]]:
    """The columns to test and, for the default selection, those left out and why."""
    import pandas as pd

    if args.columns:
        columns = _split(args.columns)
        for col in columns:
            _require(col, [("reference", ref), ("current", cur)])
        return columns, []
    columns, skipped = [], []
    for c in ref.columns:
        if c not in cur.columns or c in special:
            continue
        if pd.api.types.is_datetime64_any_dtype(ref[c]) or pd.api.types.is_datetime64_any_dtype(cur[c]):
            # timestamps are not model inputs: left out (name them to include them)
            skipped.append({"column": str(c), "reason": "datetime"})
        elif _is_id_like(ref[c], cur[c]):
            skipped.append({"column": str(c), "reason": "id_like"})
        else:
            columns.append(c)
    return columns, skipped


def compute(args: argparse.Namespace) -> dict[str, Any]:
    from agent.evaluate import column_json
    from config.errors import InputError, MetricInputError
    from connectors.sources.files import read_table
    from metrics.drift import DriftSpec, available_methods, dataset_drift

    if args.drift_method != "auto" and args.drift_method not in available_methods():
        raise InputError(f"unknown drift method {args.drift_method!r} (use auto or one of: "
                         f"{', '.join(available_methods())})")
    ref = read_table(args.reference)
    cur = read_table(args.current)
    files = [("reference", ref), ("current", cur)]
    for name, df in files:
        if df.columns.empty:
            raise InputError(f"{name} file has no columns")
    special = {c for c in (args.prediction, args.label) if c}
    for spec_s in args.sensitive:
        special.update(spec_s.split("+"))
    for col in sorted(special):
        _require(col, files)
    for col, role in [(args.prediction, "prediction"), (args.label, "label")]:
        if col:
            _same_family(col, ref[col], cur[col], role)
    for col in sorted(special - {args.prediction, args.label}):
        _same_family(col, ref[col], cur[col], "sensitive column")
    categorical, numerical = set(_split(args.categorical)), set(_split(args.numerical))
    if categorical & numerical:
        raise InputError(f"columns both categorical and numerical: {sorted(categorical & numerical)}")
    columns, skipped = _drift_columns(args, ref, cur, special)
    kinds: dict[str, Any] = {}
    for c in columns:
        _same_family(c, ref[c], cur[c])
        if c in categorical:
            kinds[c] = "categorical"
        elif c in numerical:
            if {_family(ref[c]), _family(cur[c])} - {"numeric", "boolean", None}:
                raise InputError(f"column {c!r} is declared numerical but holds non-numeric values")
            kinds[c] = "numerical"
    out: dict[str, Any] = {"reference": {"rows": len(ref)}, "current": {"rows": len(cur)}}
    spec = DriftSpec(method=args.drift_method, threshold=args.drift_threshold, drift_share=args.drift_share,
                     fdr_alpha=args.fdr_alpha)
    drift: dict[str, Any] = {"columns": [], "drifted_count": 0, "share": 0.0, "dataset_drift": False,
                             "status": "insufficient_data"}
    if columns:
        try:
            # kinds not forced are inferred by the drift module exactly as evidently does (free text included)
            res = dataset_drift(ref, cur, columns=columns, kinds=kinds, spec=spec)
        except MetricInputError as exc:
            raise InputError(str(exc)) from exc
        judged = any(c.status == "ok" for c in res.columns)
        drift = {"columns": [column_json(c) for c in res.columns], "drifted_count": res.drifted_count,
                 "share": res.share, "dataset_drift": res.dataset_drift,
                 "status": "ok" if judged else "insufficient_data"}
    drift["skipped"] = skipped
    drift["fdr_alpha"] = args.fdr_alpha
    out["drift"] = drift
    task = _task(args, ref, cur)
    score = task == "classification" and args.prediction is not None and any(
        _score_threshold(df[args.prediction], args.threshold) is not None for _, df in files)
    pos = _pos_label(args.pos_label, args.label, args.prediction, [ref, cur], score) if task == "classification" \
        else None
    breaches: list[str] = []
    out["fairness"] = _fairness(args, cur, pos, breaches)
    out["performance"] = _performance(args, ref, cur, task, pos, breaches)
    out["breaches"] = breaches + (["dataset drift"] if out["drift"]["dataset_drift"] else [])
    return _clean(out)  # type: ignore[no-any-return]


def _task(args: argparse.Namespace, ref: Any, cur: Any) -> str:
    """classification or regression: as given, or inferred from the label (see docs/compare.md)."""
    import pandas as pd

    from config.errors import InputError

    if args.task != "auto":
        task = str(args.task)
    elif not (args.label and args.prediction):
        task = "classification"
    else:
        # a side without values (a header-only file) must not turn the other side's dtype into object
        label = pd.concat([s.dropna() for s in (ref[args.label], cur[args.label]) if s.notna().any()]
                          or [ref[args.label].dropna()], ignore_index=True)
        pred = pd.concat([s.dropna() for s in (ref[args.prediction], cur[args.prediction]) if s.notna().any()]
                         or [ref[args.prediction].dropna()], ignore_index=True)
        numeric = pd.api.types.is_numeric_dtype(label) and not pd.api.types.is_bool_dtype(label)
        task = "classification"
        if numeric and len(label):
            whole = bool((label == label.round()).all())
            pred_numeric = pd.api.types.is_numeric_dtype(pred) and not pd.api.types.is_bool_dtype(pred)
            pred_continuous = pred_numeric and bool(len(pred)) and not bool(((pred >= 0) & (pred <= 1)).all())
            if not whole or (label.nunique() > 2 and pred_continuous and not (pred == pred.round()).all()):
                task = "regression"
    if task == "regression":
        if not (args.label and args.prediction):
            raise InputError("--task regression needs --label and --prediction")
        for col in (args.label, args.prediction):
            for name, df in (("reference", ref), ("current", cur)):
                if _family(df[col]) not in ("numeric", None):
                    raise InputError(f"regression needs numbers: column {col!r} of the {name} file holds "
                                     f"{_family(df[col])} values")
        if args.sensitive:
            raise InputError("--sensitive needs a classification prediction (fairness compares positive rates)")
    return task


def _fairness(args: argparse.Namespace, cur: Any, pos: object, breaches: list[str]) -> list[dict[str, Any]]:
    from agent.evaluate import fairness_json
    from config.errors import InputError
    from metrics.fairness import fairness

    if args.sensitive and not args.prediction:
        raise InputError("--sensitive needs --prediction")
    entries: list[dict[str, Any]] = []
    if not args.sensitive:
        return entries
    thr = _score_threshold(cur[args.prediction], args.threshold)
    for spec_s in args.sensitive:
        parts = spec_s.split("+")
        y_true = cur[args.label] if args.label else None
        if len(cur) == 0:
            entries.append({"sensitive": spec_s, "groups": [], "metrics": {}, "status": "insufficient_data",
                            "breaches": []})
            continue
        r = fairness(y_pred=cur[args.prediction], sensitive=cur[parts], y_true=y_true, pos_label=pos,
                     threshold=thr, min_group_size=args.min_group_size, ci_level=CI_LEVEL)
        fj = fairness_json(r)
        fj["ci_level"] = CI_LEVEL
        for g, stats in zip(fj["groups"], r.groups, strict=True):
            # the error-rate intervals are computed with the selection rate's; without labels they are nan
            g["true_positive_rate_ci"] = list(stats.true_positive_rate_ci)
            g["false_positive_rate_ci"] = list(stats.false_positive_rate_ci)
        fj["breaches"] = []
        for m, v in r.metrics.items():
            over = m in FAIRNESS_LIMITS and v == v and r.status == "ok" and v > args.fairness_threshold
            if over and r.significant.get(m, True):
                fj["breaches"].append(m)
                breaches.append(f"fairness {spec_s}: {m} {v:.3f}")
        entries.append(fj)
    return entries


def _performance(args: argparse.Namespace, ref: Any, cur: Any, task: str, pos: object,
                 breaches: list[str]) -> dict[str, Any]:
    """Performance on both files and whether the chosen metric worsened by more than the allowed drop."""
    from config.errors import InputError
    from config.model import CLASSIFICATION_METRICS, REGRESSION_METRICS, SCORE_METRICS
    from metrics.performance import classification_metrics, regression_metrics

    metric = args.performance_metric or DEFAULT_METRIC[task]
    perf: dict[str, Any] = {"task": task, "metric": metric, "max_drop": args.performance_drop, "reference": {},
                            "current": {}, "drop": None, "breach": False}
    if not (args.label and args.prediction):
        if args.performance_metric:
            raise InputError("--performance-metric needs --label and --prediction")
        perf["status"] = "no_label"
        return perf
    is_score = task == "classification" and any(
        _score_threshold(df[args.prediction], args.threshold) is not None for df in (ref, cur))
    allowed = REGRESSION_METRICS if task == "regression" else SCORE_METRICS if is_score else CLASSIFICATION_METRICS
    if metric not in allowed:
        kind = "regression" if task == "regression" else "score" if is_score else "class-label"
        raise InputError(f"--performance-metric {metric!r} is not computed for a {kind} prediction "
                         f"(use one of: {', '.join(allowed)})")
    for name, df in (("reference", ref), ("current", cur)):
        lab = df[[args.label, args.prediction]].dropna()
        if lab.empty:
            perf[name] = {"status": "insufficient_data"}
            continue
        if task == "regression":
            perf[name] = regression_metrics(y_true=lab[args.label], y_pred=lab[args.prediction])
            continue
        thr = _score_threshold(lab[args.prediction], args.threshold)
        if thr is not None:
            pred_cls = (lab[args.prediction].astype(float) >= thr)
            y_true_b = lab[args.label] == pos
            perf[name] = classification_metrics(y_true=y_true_b, y_pred=pred_cls,
                                                y_score=lab[args.prediction].astype(float), pos_label=True)
        else:
            perf[name] = classification_metrics(y_true=lab[args.label], y_pred=lab[args.prediction], pos_label=pos)
    before, after = perf["reference"].get(metric), perf["current"].get(metric)
    if "status" in perf["reference"] or "status" in perf["current"]:
        perf["status"] = "insufficient_data"
    elif not (isinstance(before, float) and isinstance(after, float) and math.isfinite(before)
              and math.isfinite(after)):
        perf["status"] = "insufficient_data"  # the metric is undefined on a file (one class only, ...)
    else:
        perf["status"] = "ok"
        worse = after - before if metric in LOWER_IS_BETTER else before - after
        perf["drop"] = worse
        if worse > args.performance_drop:
            perf["breach"] = True
            breaches.append(f"{metric} worsened from {before:.4g} to {after:.4g} (allowed: {args.performance_drop})")
    return perf


def _score_threshold(pred: Any, threshold: float) -> float | None:
    """A float column whose values are not all 0/1 is a score: binarise it at ``threshold``."""
    import pandas as pd

    if pd.api.types.is_float_dtype(pred):
        vals = pred.dropna()
        if len(vals) and not set(vals.unique()[:3]).issubset({0.0, 1.0}):
            return threshold
    return None


_PERFORMANCE_ORDER = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier", "mae", "rmse", "r2")
_TEXT_NOTE = ("free text, not judged (evidently's text-drift model is not implemented): name a method with "
              "--drift-method or list the column in --categorical to compare it as categories")
_SKIP_NOTE = {"datetime": "a date-time column, not a model input (drift of dates is not computed)",
              "id_like": "every value distinct in both files: a row identifier, new ids are not drift; name it "
                         "in --columns to include it"}


def _drift_notes(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(column, why) for every column the drift verdict does not cover."""
    notes = [(c["column"], _TEXT_NOTE) for c in d["columns"] if c.get("status") == "text_not_supported"]
    notes += [(s["column"], f"left out: {_SKIP_NOTE.get(s['reason'], s['reason'])}") for s in d.get("skipped", [])]
    return notes


def _performance_rows(perf: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    ref, cur = perf.get("reference", {}), perf.get("current", {})
    return [(k, ref.get(k), cur.get(k)) for k in _PERFORMANCE_ORDER if k in ref or k in cur]


def _performance_verdict(perf: dict[str, Any]) -> str:
    status = perf.get("status")
    if status == "no_label":
        return "not computed: give --label and --prediction"
    if status != "ok":
        return f"insufficient data for {perf['metric']}"
    word = "BREACH" if perf.get("breach") else "ok"
    return (f"{word}: {perf['metric']} worsened by {_f(perf['drop'])} (allowed {_f(perf['max_drop'])}) "
            f"[{perf['task']}]")


def render_text(r: dict[str, Any]) -> str:
    lines = [f"reference rows: {r['reference']['rows']}   current rows: {r['current']['rows']}", ""]
    d = r["drift"]
    judged = [c for c in d["columns"] if c.get("status", "ok") == "ok"]
    lines.append(f"DRIFT: {d['drifted_count']} of {len(judged)} judged columns drifted (share {d['share']:.2f})"
                 f" -> {'DATASET DRIFT' if d['dataset_drift'] else 'no dataset drift'}"
                 + (f"  [Benjamini-Hochberg at {d['fdr_alpha']}]" if d.get("fdr_alpha") else ""))
    lines.append(f"  {'column':<24} {'kind':<12} {'method':<16} {'score':>12} {'threshold':>10}  drifted")
    for c in d["columns"]:
        score = "n/a" if c["score"] is None else f"{c['score']:.6g}"
        verdict = "YES" if c["drifted"] else ("no" if c.get("status", "ok") == "ok" else c["status"])
        lines.append(f"  {c['column']:<24} {c['kind']:<12} {c['method']:<16} {score:>12} {_f(c['threshold']):>10}  "
                     f"{verdict}")
    for column, why in _drift_notes(d):
        lines.append(f"  note: {column}: {why}")
    for f in r.get("fairness", []):
        lines += ["", f"FAIRNESS by {f['sensitive']}" + (f": BREACH {', '.join(f['breaches'])}"
                                                          if f.get("breaches") else "")]
        lines.append(f"  {'group':<20} {'count':>8} {'selection':>10} {'95% CI':>15} {'TPR':>8} {'FPR':>8}  judged")
        for g in f["groups"]:
            ci = g.get("selection_rate_ci") or [None, None]
            lines.append(f"  {g['group']!s:<20} {g['count']:>8} {_f(g['selection_rate']):>10} "
                         f"{_f(ci[0]) + '-' + _f(ci[1]):>15} {_f(g['true_positive_rate']):>8} "
                         f"{_f(g['false_positive_rate']):>8}  {'yes' if g['judged'] else 'no'}")
        for m, v in f.get("metrics", {}).items():
            lines.append(f"  {m:<32} {_f(v)}")
    perf = r["performance"]
    lines += ["", f"PERFORMANCE (reference -> current): {_performance_verdict(perf)}"]
    for k, before, after in _performance_rows(perf):
        lines.append(f"  {k:<10} {_f(before):>8} -> {_f(after):>8}")
    lines += ["", "RESULT: " + ("BREACH: " + "; ".join(r["breaches"]) if r["breaches"] else "nothing breached")]
    return "\n".join(lines) + "\n"


def render_html(r: dict[str, Any]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr class='{'bad' if c['drifted'] else ''}'><td>{e(c['column'])}</td><td>{e(c['kind'])}</td>"
        f"<td>{e(c['method'])}</td><td>{_f(c['score'])}</td><td>{_f(c['threshold'])}</td>"
        f"<td>{'yes' if c['drifted'] else ('no' if c.get('status', 'ok') == 'ok' else e(c['status']))}</td></tr>"
        for c in r["drift"]["columns"])
    notes = "".join(f"<li><code>{e(column)}</code>: {e(why)}</li>" for column, why in _drift_notes(r["drift"]))
    fair = ""
    for f in r.get("fairness", []):
        groups = "".join(
            f"<tr><td>{e(str(g['group']))}</td><td>{g['count']}</td><td>{_f(g['selection_rate'])}</td>"
            f"<td>{_f((g.get('selection_rate_ci') or [None])[0])} &ndash; "
            f"{_f((g.get('selection_rate_ci') or [None, None])[1])}</td>"
            f"<td>{_f(g['true_positive_rate'])}</td><td>{_f(g['false_positive_rate'])}</td>"
            f"<td>{'yes' if g['judged'] else 'no'}</td></tr>" for g in f["groups"])
        mets = "".join(f"<li>{e(m)}: {_f(v)}</li>" for m, v in f.get("metrics", {}).items())
        breach = f" &mdash; breach: {e(', '.join(f['breaches']))}" if f.get("breaches") else ""
        fair += (f"<h2>Fairness by {e(f['sensitive'])}{breach}</h2><table><tr><th>group</th><th>count</th>"
                 f"<th>selection rate</th><th>95% interval</th><th>TPR</th><th>FPR</th><th>judged</th></tr>{groups}"
                 f"</table><ul>{mets}</ul>")
    perf = r["performance"]
    perf_rows = "".join(
        f"<tr class='{'bad' if k == perf['metric'] and perf.get('breach') else ''}'><td>{e(k)}</td>"
        f"<td>{_f(before)}</td><td>{_f(after)}</td></tr>" for k, before, after in _performance_rows(perf))
    perf_table = (f"<table><tr><th>metric</th><th>reference</th><th>current</th></tr>{perf_rows}</table>"
                  if perf_rows else "")
    verdict = ("BREACH: " + e("; ".join(r["breaches"]))) if r["breaches"] else "Nothing breached"
    d = r["drift"]
    judged = sum(1 for c in d["columns"] if c.get("status", "ok") == "ok")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aims-agent compare</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}tr.bad td{{background:#fde2e1}}
.verdict{{font-size:1.3rem;font-weight:600}}</style></head><body>
<h1>Reference vs current</h1><p class="verdict">{verdict}</p>
<p>Reference rows: {r['reference']['rows']} &middot; current rows: {r['current']['rows']}</p>
<h2>Drift: {d['drifted_count']} of {judged} judged columns (share {d['share']:.2f})</h2>
<table><tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th></tr>{rows}</table>
{f"<ul>{notes}</ul>" if notes else ""}
{fair}<h2 id="performance">Performance (reference &rarr; current)</h2><p>{e(_performance_verdict(perf))}</p>
{perf_table}</body></html>
"""


def _f(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_compare(args: argparse.Namespace) -> int:
    from config.errors import AimsError

    try:
        result = compute(args)
    except AimsError as exc:
        print(f"aims-agent: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        text = json.dumps(result, indent=2) + "\n"
    elif args.format == "html":
        text = render_html(result)
    else:
        text = render_text(result)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"aims-agent: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 1 if result["breaches"] else 0
