"""`aims-agent compare` on bad input: exit 2 with a one-line reason (mismatched dtypes, a positive class
that matches nothing, out-of-range options); a window with no rows is insufficient data, not an error."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import T0, make_rows


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "compare", *args], capture_output=True, text=True,
                          timeout=120)


def _exit_2(r: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-800:], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    ref = make_rows(rng, 1500, T0).drop(columns=["id", "ts"])
    cur = make_rows(rng, 1500, T0 + timedelta(days=1)).drop(columns=["id", "ts"])
    return ref, cur


def _write(tmp: Path, name: str, df: pd.DataFrame) -> str:
    path = tmp / name
    df.to_csv(path, index=False) if name.endswith(".csv") else df.to_parquet(path, index=False)
    return str(path)


def test_a_numeric_column_that_holds_text_in_the_current_file(tmp_path: Path, frames: tuple[pd.DataFrame, ...]) -> None:
    ref, cur = frames
    cur = cur.assign(x1=[f"{v:.2f} units" for v in cur["x1"]])
    r = _cli(_write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.csv", cur))
    _exit_2(r, "'x1'", "numeric values in the reference but text values in the current file")


def test_prediction_and_label_of_different_kinds_between_the_files(tmp_path: Path,
                                                                   frames: tuple[pd.DataFrame, ...]) -> None:
    ref, cur = frames
    a = _write(tmp_path, "ref.parquet", ref)
    b = _write(tmp_path, "cur.parquet", cur.assign(label=cur["label"].map({0: "no", 1: "yes"})))
    _exit_2(_cli(a, b, "--label", "label", "--prediction", "score"), "label 'label'", "numeric", "text")
    c = _write(tmp_path, "cur2.parquet", cur.assign(score=cur["score"] > 0.5))
    _exit_2(_cli(a, c, "--label", "label", "--prediction", "score"), "prediction 'score'", "numeric", "boolean")
    d = _write(tmp_path, "cur3.parquet", cur.assign(group=np.where(cur["group"] == "A", 1, 2)))
    _exit_2(_cli(a, d, "--prediction", "score", "--sensitive", "group"), "sensitive column 'group'")


def test_a_header_only_current_file_is_insufficient_data(tmp_path: Path, frames: tuple[pd.DataFrame, ...]) -> None:
    ref, _ = frames
    header_only = tmp_path / "cur.csv"
    header_only.write_text(",".join(ref.columns) + "\n")
    r = _cli(_write(tmp_path, "ref.csv", ref), str(header_only), "--prediction", "score", "--label", "label",
             "--sensitive", "group", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["current"]["rows"] == 0
    assert out["drift"]["status"] == "insufficient_data" and not out["drift"]["dataset_drift"]
    assert {c["status"] for c in out["drift"]["columns"]} == {"insufficient_data"}
    assert out["fairness"][0]["status"] == "insufficient_data"
    assert out["performance"]["status"] == "insufficient_data"
    assert out["performance"]["current"] == {"status": "insufficient_data"}


def test_a_positive_class_that_matches_nothing(tmp_path: Path, frames: tuple[pd.DataFrame, ...]) -> None:
    ref, cur = frames
    a, b = _write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur)
    _exit_2(_cli(a, b, "--label", "label", "--prediction", "score", "--pos-label", "7"), "--pos-label '7'",
            "label")
    yes_no = {0: "no", 1: "yes"}
    ra = _write(tmp_path, "ref-yn.parquet", ref.assign(label=ref["label"].map(yes_no)))
    cb = _write(tmp_path, "cur-yn.parquet", cur.assign(label=cur["label"].map(yes_no)))
    _exit_2(_cli(ra, cb, "--label", "label", "--prediction", "score"), "defaults to 1", "--pos-label")
    r = _cli(ra, cb, "--label", "label", "--prediction", "score", "--pos-label", "yes", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    assert json.loads(r.stdout)["performance"]["current"]["recall"] > 0


@pytest.mark.parametrize(("option", "value"), [
    ("--drift-share", "7"), ("--drift-share", "0"), ("--drift-threshold", "nan"), ("--drift-threshold", "-1"),
    ("--fairness-threshold", "inf"), ("--fairness-threshold", "0"), ("--min-group-size", "0"),
    ("--min-group-size", "2.5"), ("--threshold", "nan"), ("--fdr-alpha", "1"), ("--fdr-alpha", "0"),
    ("--performance-drop", "-0.1"), ("--performance-drop", "nan"), ("--task", "ranking"),
])
def test_numeric_options_are_range_checked(tmp_path: Path, frames: tuple[pd.DataFrame, ...], option: str,
                                           value: str) -> None:
    ref, cur = frames
    r = _cli(_write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur), option, value)
    _exit_2(r, option)


def test_a_performance_metric_the_prediction_cannot_give(tmp_path: Path, frames: tuple[pd.DataFrame, ...]) -> None:
    ref, cur = frames
    a, b = _write(tmp_path, "ref.parquet", ref), _write(tmp_path, "cur.parquet", cur)
    _exit_2(_cli(a, b, "--label", "label", "--prediction", "score", "--performance-metric", "mae"), "'mae'",
            "score prediction")
    _exit_2(_cli(a, b, "--performance-metric", "accuracy"), "needs --label")
    _exit_2(_cli(a, b, "--label", "label", "--prediction", "score", "--task", "regression", "--sensitive", "group"),
            "--sensitive")
