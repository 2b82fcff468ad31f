"""`aims-agent compare`: the scripted contract of PRODUCT.md (arguments, exit codes, JSON fields)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

from tests.conftest import T0, make_rows


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "compare", *args], capture_output=True, text=True,
                          timeout=120)


def _files(tmp: Path, *, shift: float = 0.0, bias: float = 0.0, fmt: str = "parquet") -> tuple[Path, Path]:
    rng = np.random.default_rng(11)
    ref = make_rows(rng, 2000, T0).drop(columns=["id", "ts"])
    cur = make_rows(rng, 2000, T0 + timedelta(days=1), shift=shift, bias=bias).drop(columns=["id", "ts"])
    paths = []
    for name, df in (("ref", ref), ("cur", cur)):
        p = tmp / f"{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(p, index=False)
        elif fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_json(p, orient="records", lines=True)
        paths.append(p)
    return paths[0], paths[1]


def test_no_drift_exits_0_with_the_documented_json(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    r = _cli(str(ref), str(cur), "--prediction", "score", "--label", "label", "--sensitive", "group",
             "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["reference"]["rows"] == 2000 and out["current"]["rows"] == 2000
    cols = {c["column"]: c for c in out["drift"]["columns"]}
    assert set(cols) == {"x1", "x2", "colour"}, "prediction, label and sensitive columns are not drift columns"
    assert cols["x1"]["method"] == "wasserstein" and cols["colour"]["method"] == "jensenshannon"
    assert set(cols["x1"]) >= {"column", "kind", "method", "score", "threshold", "drifted"}
    assert {"drifted_count", "share", "dataset_drift"} <= set(out["drift"])
    (fair,) = out["fairness"]
    assert fair["sensitive"] == "group"
    assert {g["group"] for g in fair["groups"]} == {"A", "B"}
    assert set(fair["groups"][0]) >= {"group", "count", "selection_rate", "true_positive_rate", "false_positive_rate"}
    assert set(fair["metrics"]) == {"demographic_parity_difference", "demographic_parity_ratio",
                                    "equalized_odds_difference", "equal_opportunity_difference"}
    assert "accuracy" in out["performance"]["reference"] and "accuracy" in out["performance"]["current"]


def test_drift_exits_1(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path, shift=2.0, fmt="csv")
    r = _cli(str(ref), str(cur), "--columns", "x1,x2", "--format", "json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["drift"]["dataset_drift"] is True


def test_bias_exits_1_and_intersections_are_one_entry(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path, bias=2.0, fmt="jsonl")
    r = _cli(str(ref), str(cur), "--prediction", "score", "--sensitive", "group", "--sensitive", "group+colour",
             "--format", "json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [f["sensitive"] for f in out["fairness"]] == ["group", "group+colour"]
    assert {g["group"] for g in out["fairness"][1]["groups"]} >= {"A+red", "B+blue"}


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases = [
        (str(tmp_path / "nope.parquet"), str(cur), []),
        (str(ref), str(empty), []),
        (str(ref), str(cur), ["--prediction", "nope"]),
        (str(ref), str(cur), ["--drift-method", "astrology"]),
        (str(ref), str(tmp_path / "x.txt"), []),
    ]
    (tmp_path / "x.txt").write_text("hello")
    for a, b, extra in cases:
        r = _cli(a, b, *extra)
        assert r.returncode == 2, (a, b, extra, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr


def test_text_and_html_reports(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path, shift=2.0)
    r = _cli(str(ref), str(cur), "--format", "text")
    assert r.returncode == 1 and "DRIFT" in r.stdout
    html = tmp_path / "r.html"
    r = _cli(str(ref), str(cur), "--format", "html", "-o", str(html))
    assert r.returncode == 1 and html.read_text().startswith("<!doctype html>")
