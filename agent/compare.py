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
PERFORMANCE_DROP = 0.05  # absolute drop of accuracy (or rise of error) vs the reference that counts as a breach


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", help="reference data: Parquet, CSV or JSON Lines")
    p.add_argument("current", help="current data: Parquet, CSV or JSON Lines")
    p.add_argument("--prediction", help="prediction column (class label or score)")
    p.add_argument("--label", help="ground-truth column")
    p.add_argument("--sensitive", action="append", default=[], metavar="COL",
                   help="sensitive feature (repeat; A+B for an intersection)")
    p.add_argument("--pos-label", help="positive class of label and prediction (default 1)")
    p.add_argument("--threshold", type=float, default=0.5, help="binarise score predictions here (default 0.5)")
    p.add_argument("--columns", help="comma-separated columns to test for drift")
    p.add_argument("--categorical", help="comma-separated columns to treat as categorical")
    p.add_argument("--numerical", help="comma-separated columns to treat as numerical")
    p.add_argument("--drift-method", default="auto", help="auto or an evidently stattest name")
    p.add_argument("--drift-threshold", type=float, help="threshold for the drift method (default: its own)")
    p.add_argument("--drift-share", type=float, default=0.5, help="share of drifted columns for dataset drift")
    p.add_argument("--fairness-threshold", type=float, default=0.1, help="largest acceptable gap (default 0.1)")
    p.add_argument("--min-group-size", type=int, default=30, help="smaller groups are shown but not judged")
    p.add_argument("--format", choices=["json", "text", "html"], default="text")
    p.add_argument("-o", "--output", help="write the report here instead of stdout")


class BadInput(Exception):
    pass


def _split(v: str | None) -> list[str]:
    return [c.strip() for c in v.split(",") if c.strip()] if v else []


def _pos_label(raw: str | None, *series: Any) -> object:
    """`--pos-label 1` must match integer, float, boolean or string columns alike."""
    if raw is None:
        return 1
    for s in series:
        if s is None:
            continue
        for v in s.dropna().unique()[:1000]:
            if str(v) == raw or (isinstance(v, bool | float | int) and _num_eq(v, raw)):
                return v
    return raw


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
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def compute(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from agent.evaluate import column_json, fairness_json
    from config.errors import InputError, MetricInputError
    from connectors.sources.files import read_table
    from metrics.drift import DriftSpec, dataset_drift, infer_kind
    from metrics.fairness import fairness
    from metrics.performance import classification_metrics

    ref = read_table(args.reference)
    cur = read_table(args.current)
    for name, df in (("reference", ref), ("current", cur)):
        if df.columns.empty:
            raise InputError(f"{name} file has no columns")
    special = {c for c in (args.prediction, args.label) if c}
    for spec in args.sensitive:
        special.update(spec.split("+"))
    for col in sorted(special):
        for name, df in (("reference", ref), ("current", cur)):
            if col not in df.columns:
                raise InputError(f"column {col!r} is not in the {name} file")
    categorical, numerical = set(_split(args.categorical)), set(_split(args.numerical))
    if categorical & numerical:
        raise InputError(f"columns both categorical and numerical: {sorted(categorical & numerical)}")
    if args.columns:
        columns = _split(args.columns)
        for col in columns:
            for name, df in (("reference", ref), ("current", cur)):
                if col not in df.columns:
                    raise InputError(f"column {col!r} is not in the {name} file")
    else:
        # timestamps are not model inputs: by default they are left out of drift (name them to include)
        columns = [c for c in ref.columns if c in cur.columns and c not in special
                   and not pd.api.types.is_datetime64_any_dtype(ref[c])
                   and not pd.api.types.is_datetime64_any_dtype(cur[c])]
    kinds: dict[str, Any] = {}
    for c in columns:
        if c in categorical:
            kinds[c] = "categorical"
        elif c in numerical:
            if not (pd.api.types.is_numeric_dtype(ref[c]) and pd.api.types.is_numeric_dtype(cur[c])):
                raise InputError(f"column {c!r} is declared numerical but holds non-numeric values")
            kinds[c] = "numerical"
        else:
            kinds[c] = infer_kind(ref[c], cur[c])
            if kinds[c] == "numerical" and not pd.api.types.is_numeric_dtype(cur[c]):
                raise InputError(f"column {c!r} is numeric in the reference but not in the current file "
                                 f"(dtype {cur[c].dtype})")
    out: dict[str, Any] = {"reference": {"rows": len(ref)}, "current": {"rows": len(cur)}}
    spec = DriftSpec(method=args.drift_method, threshold=args.drift_threshold, drift_share=args.drift_share)
    if columns and len(ref) and len(cur):
        try:
            res = dataset_drift(ref, cur, columns=columns, kinds=kinds, spec=spec)
        except MetricInputError as exc:
            raise InputError(str(exc)) from exc
        out["drift"] = {"columns": [column_json(c) for c in res.columns], "drifted_count": res.drifted_count,
                        "share": res.share, "dataset_drift": res.dataset_drift, "status": "ok"}
    else:
        out["drift"] = {"columns": [], "drifted_count": 0, "share": 0.0, "dataset_drift": False,
                        "status": "insufficient_data"}
    pos = _pos_label(args.pos_label, cur.get(args.label) if args.label else None,
                     cur.get(args.prediction) if args.prediction else None)
    out["fairness"] = []
    breaches: list[str] = []
    if args.sensitive and args.prediction:
        thr = _score_threshold(cur[args.prediction], pos, args.threshold)
        for spec_s in args.sensitive:
            parts = spec_s.split("+")
            y_true = cur[args.label] if args.label else None
            if len(cur) == 0:
                out["fairness"].append({"sensitive": spec_s, "groups": [], "metrics": {},
                                        "status": "insufficient_data"})
                continue
            r = fairness(y_pred=cur[args.prediction], sensitive=cur[parts], y_true=y_true, pos_label=pos,
                         threshold=thr, min_group_size=args.min_group_size)
            fj = fairness_json(r)
            fj["breaches"] = []
            for m, v in r.metrics.items():
                over = m in FAIRNESS_LIMITS and v == v and r.status == "ok" and v > args.fairness_threshold
                if over and r.significant.get(m, True):
                    fj["breaches"].append(m)
                    breaches.append(f"fairness {spec_s}: {m} {v:.3f}")
            out["fairness"].append(fj)
    elif args.sensitive:
        raise InputError("--sensitive needs --prediction")
    if args.label and args.prediction:
        perf: dict[str, Any] = {}
        for name, df in (("reference", ref), ("current", cur)):
            lab = df[[args.label, args.prediction]].dropna()
            if lab.empty:
                perf[name] = {"status": "insufficient_data"}
                continue
            thr = _score_threshold(lab[args.prediction], pos, args.threshold)
            if thr is not None:
                pred_cls = (lab[args.prediction].astype(float) >= thr)
                y_true_b = lab[args.label] == pos
                perf[name] = classification_metrics(y_true=y_true_b, y_pred=pred_cls,
                                                    y_score=lab[args.prediction].astype(float), pos_label=True)
            else:
                perf[name] = classification_metrics(y_true=lab[args.label], y_pred=lab[args.prediction],
                                                    pos_label=pos)
        out["performance"] = perf
        ra, ca = perf.get("reference", {}).get("accuracy"), perf.get("current", {}).get("accuracy")
        if isinstance(ra, float) and isinstance(ca, float) and ra - ca > PERFORMANCE_DROP:
            breaches.append(f"accuracy dropped from {ra:.3f} to {ca:.3f}")
            out["performance"]["breach"] = True
    out["breaches"] = breaches + (["dataset drift"] if out["drift"]["dataset_drift"] else [])
    return _clean(out)  # type: ignore[no-any-return]


def _score_threshold(pred: Any, pos: object, threshold: float) -> float | None:
    """A float column whose values are not the positive label is a score: binarise it."""
    import pandas as pd

    if pd.api.types.is_float_dtype(pred):
        vals = pred.dropna()
        if len(vals) and not set(vals.unique()[:3]).issubset({0.0, 1.0}):
            return threshold
    return None


def render_text(r: dict[str, Any]) -> str:
    lines = [f"reference rows: {r['reference']['rows']}   current rows: {r['current']['rows']}", ""]
    d = r["drift"]
    lines.append(f"DRIFT: {d['drifted_count']} of {len(d['columns'])} columns drifted (share {d['share']:.2f})"
                 f" -> {'DATASET DRIFT' if d['dataset_drift'] else 'no dataset drift'}")
    lines.append(f"  {'column':<24} {'kind':<12} {'method':<16} {'score':>12} {'threshold':>10}  drifted")
    for c in d["columns"]:
        score = "n/a" if c["score"] is None else f"{c['score']:.6g}"
        lines.append(f"  {c['column']:<24} {c['kind']:<12} {c['method']:<16} {score:>12} {_f(c['threshold']):>10}  "
                     f"{'YES' if c['drifted'] else 'no'}")
    for f in r.get("fairness", []):
        lines += ["", f"FAIRNESS by {f['sensitive']}" + (f": BREACH {', '.join(f['breaches'])}"
                                                          if f.get("breaches") else "")]
        lines.append(f"  {'group':<20} {'count':>8} {'selection':>10} {'TPR':>8} {'FPR':>8}  judged")
        for g in f["groups"]:
            lines.append(f"  {g['group']!s:<20} {g['count']:>8} {_f(g['selection_rate']):>10} "
                         f"{_f(g['true_positive_rate']):>8} {_f(g['false_positive_rate']):>8}  "
                         f"{'yes' if g['judged'] else 'no'}")
        for m, v in f.get("metrics", {}).items():
            lines.append(f"  {m:<32} {_f(v)}")
    if "performance" in r:
        lines += ["", "PERFORMANCE (reference -> current)"]
        ref, cur = r["performance"].get("reference", {}), r["performance"].get("current", {})
        for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"):
            if k in ref or k in cur:
                lines.append(f"  {k:<10} {_f(ref.get(k)):>8} -> {_f(cur.get(k)):>8}")
    lines += ["", "RESULT: " + ("BREACH: " + "; ".join(r["breaches"]) if r["breaches"] else "nothing breached")]
    return "\n".join(lines) + "\n"


def render_html(r: dict[str, Any]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr class='{'bad' if c['drifted'] else ''}'><td>{e(c['column'])}</td><td>{e(c['kind'])}</td>"
        f"<td>{e(c['method'])}</td><td>{_f(c['score'])}</td><td>{_f(c['threshold'])}</td>"
        f"<td>{'yes' if c['drifted'] else 'no'}</td></tr>" for c in r["drift"]["columns"])
    fair = ""
    for f in r.get("fairness", []):
        groups = "".join(f"<tr><td>{e(str(g['group']))}</td><td>{g['count']}</td><td>{_f(g['selection_rate'])}</td>"
                         f"<td>{_f(g['true_positive_rate'])}</td><td>{_f(g['false_positive_rate'])}</td>"
                         f"<td>{'yes' if g['judged'] else 'no'}</td></tr>" for g in f["groups"])
        mets = "".join(f"<li>{e(m)}: {_f(v)}</li>" for m, v in f.get("metrics", {}).items())
        fair += (f"<h2>Fairness by {e(f['sensitive'])}</h2><table><tr><th>group</th><th>count</th>"
                 f"<th>selection rate</th><th>TPR</th><th>FPR</th><th>judged</th></tr>{groups}</table><ul>{mets}</ul>")
    verdict = ("BREACH: " + e("; ".join(r["breaches"]))) if r["breaches"] else "Nothing breached"
    d = r["drift"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>aims-agent compare</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}tr.bad td{{background:#fde2e1}}
.verdict{{font-size:1.3rem;font-weight:600}}</style></head><body>
<h1>Reference vs current</h1><p class="verdict">{verdict}</p>
<p>Reference rows: {r['reference']['rows']} &middot; current rows: {r['current']['rows']}</p>
<h2>Drift: {d['drifted_count']} of {len(d['columns'])} columns (share {d['share']:.2f})</h2>
<table><tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th></tr>{rows}</table>
{fair}</body></html>
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
