"""`aims-agent compare`: regression metrics for a continuous label, a configurable performance breach,
the performance section in every format, Benjamini-Hochberg, fairness intervals, and default drift
columns that neither judge free text nor row identifiers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from metrics.drift import DriftSpec, dataset_drift
from metrics.fairness import wilson_interval
from tests.conftest import T0, make_rows


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "compare", *args], capture_output=True, text=True,
                          timeout=120)


def _json(*args: str) -> tuple[int, dict[str, Any]]:
    r = _cli(*args, "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def _regression(rng: np.random.Generator, n: int, noise: float) -> pd.DataFrame:
    size = rng.normal(100, 20, n)
    price = 3.0 * size + rng.normal(0, 15, n)
    return pd.DataFrame({"size": size, "price": price, "predicted": 3.0 * size + rng.normal(0, noise, n)})


def _write(tmp: Path, name: str, df: pd.DataFrame) -> str:
    path = tmp / name
    df.to_parquet(path, index=False)
    return str(path)


def test_a_continuous_label_gets_regression_metrics_equal_to_sklearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ref, cur = _regression(rng, 1200, 10.0), _regression(rng, 1200, 60.0)
    a, b = _write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur)
    code, out = _json(a, b, "--label", "price", "--prediction", "predicted")
    perf = out["performance"]
    assert (perf["task"], perf["metric"], perf["status"]) == ("regression", "r2", "ok")
    for side, df in (("reference", ref), ("current", cur)):
        got = perf[side]
        assert got["mae"] == pytest.approx(mean_absolute_error(df["price"], df["predicted"]), rel=1e-12)
        assert got["rmse"] == pytest.approx(root_mean_squared_error(df["price"], df["predicted"]), rel=1e-12)
        assert got["r2"] == pytest.approx(r2_score(df["price"], df["predicted"]), rel=1e-12)
        assert "accuracy" not in got
    assert code == 1 and perf["breach"] and any("r2 worsened" in b for b in out["breaches"])
    code, out = _json(a, b, "--label", "price", "--prediction", "predicted", "--performance-drop", "0.9")
    assert code == 0 and not out["performance"]["breach"]
    code, out = _json(a, b, "--label", "price", "--prediction", "predicted", "--performance-metric", "rmse",
                      "--performance-drop", "100")
    assert code == 0 and out["performance"]["drop"] == pytest.approx(
        out["performance"]["current"]["rmse"] - out["performance"]["reference"]["rmse"])


def test_whole_number_targets_can_be_declared_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=500), "visits": rng.poisson(20, 500)})
    ref["guess"] = ref["visits"] + rng.integers(-2, 3, 500)
    a = _write(tmp_path, "ref.parquet", ref)
    r = _cli(a, a, "--label", "visits", "--prediction", "guess")
    assert r.returncode == 2 and "--task regression" in r.stderr, "whole numbers read as classes: say what to do"
    _, out = _json(a, a, "--label", "visits", "--prediction", "guess", "--task", "regression")
    assert out["performance"]["task"] == "regression" and out["performance"]["current"]["mae"] > 0


def test_the_performance_breach_is_an_option(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = make_rows(rng, 2000, T0).drop(columns=["id", "ts"])
    cur = make_rows(rng, 2000, T0 + timedelta(days=1)).drop(columns=["id", "ts"])
    cur["score"] = rng.permutation(cur["score"].to_numpy())  # the model lost its signal
    a, b = _write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur)
    code, out = _json(a, b, "--label", "label", "--prediction", "score", "--columns", "x2")
    assert code == 1 and out["performance"]["breach"] and out["performance"]["max_drop"] == 0.05
    code, out = _json(a, b, "--label", "label", "--prediction", "score", "--columns", "x2",
                      "--performance-drop", "0.5")
    assert code == 0 and out["performance"]["drop"] > 0.05
    code, out = _json(a, b, "--label", "label", "--prediction", "score", "--columns", "x2",
                      "--performance-metric", "roc_auc")
    assert code == 1 and out["performance"]["metric"] == "roc_auc"
    html = tmp_path / "report.html"
    r = _cli(a, b, "--label", "label", "--prediction", "score", "--columns", "x2", "--format", "html",
             "-o", str(html))
    page = html.read_text()
    assert r.returncode == 1 and 'id="performance"' in page and "roc_auc" in page and "accuracy" in page
    text = _cli(a, b, "--label", "label", "--prediction", "score", "--columns", "x2").stdout
    assert "PERFORMANCE" in text and "BREACH: accuracy worsened" in text


def test_performance_is_always_in_the_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = _write(tmp_path, "ref.parquet", make_rows(rng, 300, T0).drop(columns=["id", "ts"]))
    _, out = _json(a, a)
    assert out["performance"]["status"] == "no_label" and out["performance"]["breach"] is False


def test_benjamini_hochberg_and_fairness_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 800  # under 1000 rows: p-value tests
    ref = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(8)})
    cur = pd.DataFrame({f"f{i}": rng.normal(0.12 if i < 2 else 0.0, 1, n) for i in range(8)})
    cur["pred"] = (rng.random(n) < 0.4).astype(int)
    cur["truth"] = (rng.random(n) < 0.5).astype(int)
    cur["sex"] = rng.choice(["F", "M"], n)
    ref = ref.assign(pred=cur["pred"], truth=cur["truth"], sex=cur["sex"])
    a, b = _write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur)
    features = [f"f{i}" for i in range(8)]
    _, plain = _json(a, b, "--columns", ",".join(features))
    _, bh = _json(a, b, "--columns", ",".join(features), "--fdr-alpha", "0.05")
    expected = dataset_drift(ref, cur, columns=features, spec=DriftSpec(fdr_alpha=0.05))
    assert [(c["column"], c["threshold"], c["drifted"]) for c in bh["drift"]["columns"]] \
        == [(c.column, pytest.approx(c.threshold), c.drifted) for c in expected.columns]
    assert {c["threshold"] for c in plain["drift"]["columns"]} == {0.05}
    assert bh["drift"]["fdr_alpha"] == 0.05 and plain["drift"]["fdr_alpha"] is None
    _, fair = _json(a, b, "--prediction", "pred", "--label", "truth", "--sensitive", "sex", "--columns", "f0")
    (entry,) = fair["fairness"]
    assert entry["ci_level"] == 0.95
    for g in entry["groups"]:
        rows = cur[cur["sex"] == g["group"]]
        positives = rows[rows["truth"] == 1]
        tp = int((positives["pred"] == 1).sum())
        assert g["true_positive_rate_ci"] == pytest.approx(list(wilson_interval(tp, len(positives))))
        assert len(g["false_positive_rate_ci"]) == 2 and len(g["selection_rate_ci"]) == 2


def test_free_text_and_identifiers_are_not_judged_by_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    words = ["late", "payment", "refund", "card", "lost", "fee", "branch", "app"]

    def frame(n: int, offset: int) -> pd.DataFrame:
        return pd.DataFrame({
            "ticket_id": np.arange(offset, offset + n),  # new ids every day
            "request": [f"req-{offset + i:08d}" for i in range(n)],
            "complaint": [" ".join(rng.choice(words, 6)) for _ in range(n)],
            "amount": rng.normal(50, 10, n),
        })

    a, b = _write(tmp_path, "ref.parquet", frame(600, 0)), _write(tmp_path, "cur.parquet", frame(600, 10_000))
    code, out = _json(a, b)
    cols = {c["column"]: c for c in out["drift"]["columns"]}
    assert code == 0 and not out["drift"]["dataset_drift"]
    assert (cols["complaint"]["status"], cols["complaint"]["drifted"]) == ("text_not_supported", False)
    assert out["drift"]["drifted_count"] == 0 and out["drift"]["share"] == 0.0
    assert {(s["column"], s["reason"]) for s in out["drift"]["skipped"]} == {("ticket_id", "id_like"),
                                                                             ("request", "id_like")}
    text = _cli(a, b).stdout
    assert "complaint: free text, not judged" in text and "ticket_id: left out" in text
    code, out = _json(a, b, "--columns", "ticket_id,complaint", "--drift-method", "jensenshannon")
    cols = {c["column"]: c for c in out["drift"]["columns"]}
    assert code == 1 and cols["ticket_id"]["drifted"] and cols["complaint"]["status"] == "ok", \
        "named columns and a named method are judged"
