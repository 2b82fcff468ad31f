"""``auto`` drift agrees with evidently 0.7's DataDriftPreset: same test, same verdict, score within 1e-9.

Each scenario packs many column shapes into one frame, so evidently runs once per scenario.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metrics.drift import ColumnDrift, DatasetDrift, PreparedReference, dataset_drift, infer_kind
from metrics.evidently_adapter import EvidentlyDrift, evidently_drift, evidently_inferred_kinds

REL = 1e-9


def same_score(ours: float, theirs: float) -> bool:
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return math.isclose(ours, theirs, rel_tol=REL, abs_tol=0.0)


def assert_agrees(ours: DatasetDrift, theirs: EvidentlyDrift) -> None:
    mismatches = []
    for col in ours.columns:
        method, score, drifted = theirs.columns[col.column]
        if (col.method, col.drifted) != (method, drifted) or not same_score(col.score, score):
            mismatches.append((col.column, (col.method, col.score, col.drifted), (method, score, drifted)))
    assert not mismatches, mismatches
    assert (ours.drifted_count, ours.dataset_drift) == (theirs.drifted_count, theirs.dataset_drift)
    assert ours.share == pytest.approx(theirs.share, rel=REL)


def shapes(n: int, *, current: bool, seed: int) -> pd.DataFrame:
    """One column per shape the brief lists; ``current`` shifts some of them and adds unseen values."""
    rng = np.random.default_rng(seed)
    shift = 0.4 if current else 0.0
    with_gaps = rng.normal(shift, 1, n)
    with_gaps[:: max(n // 4, 2)] = np.nan
    with_gaps[1 :: max(n // 3, 3)] = np.inf
    with_gaps[0] = -np.inf if n > 3 else with_gaps[0]
    # Evidently reads a string column with more distinct values than half its rows as text.
    letters = ["a", "b"] if n < 20 else ["a", "b", "c"] + (["d"] if current else [])
    return pd.DataFrame(
        {
            "normal": rng.normal(0, 1, n),
            "shifted": rng.normal(shift, 1, n),
            "lognormal": rng.lognormal(shift, 1, n),
            "ties": np.round(rng.normal(shift, 1, n), 1),
            "float32": rng.lognormal(shift, 1, n).astype(np.float32),
            "constant": np.full(n, 3.0),
            "constant_moves": np.full(n, 2.0 if current else 1.0),
            "nan_inf": with_gaps,
            "float_2u": rng.integers(0, 2, n).astype(float),
            "float_4u": rng.integers(0, 4 + int(current), n).astype(float),
            "float_7u": rng.integers(0, 7, n).astype(float),
            "int_2u": rng.integers(0, 2, n),
            "int_5u": rng.integers(0, 5, n),
            "int_9u": rng.integers(0, 9, n),
            "int_many": rng.integers(0, 200, n) + (5 if current else 0),
            "category": pd.Categorical(rng.choice(["x", "y", "z"], n), categories=["x", "y", "z", "never"]),
            "boolean": rng.random(n) < (0.6 if current else 0.5),
            "strings": rng.choice(letters, n),
        }
    )


def run_both(n_ref: int, n_cur: int, seed: int, kinds: dict[str, str] | None = None) -> None:
    ref = shapes(n_ref, current=False, seed=seed)
    cur = shapes(n_cur, current=True, seed=seed + 1)
    columns = list(ref.columns)
    ours = dataset_drift(ref, cur, columns=columns, kinds=kinds)  # type: ignore[arg-type]
    theirs = evidently_drift(ref, cur, columns, kinds)  # type: ignore[arg-type]
    assert_agrees(ours, theirs)


@pytest.mark.parametrize(
    ("n_ref", "n_cur"),
    [(8, 6), (1000, 700), (1001, 700), (1001, 5000), (2500, 1200)],
    ids=["tiny", "ref_exactly_1000", "ref_1001", "current_larger", "mid"],
)
def test_auto_matches_evidently_on_every_shape(n_ref: int, n_cur: int) -> None:
    run_both(n_ref, n_cur, seed=n_ref + n_cur)


def test_auto_matches_evidently_with_explicit_kinds() -> None:
    # Kinds given against the grain: integers and few-valued floats as numbers, floats as categories.
    kinds = {c: "numerical" for c in ["normal", "float_2u", "float_4u", "int_2u", "int_5u", "int_9u", "int_many"]}
    kinds |= {"ties": "categorical", "category": "categorical", "strings": "categorical", "boolean": "categorical"}
    ref = shapes(1200, current=False, seed=7)
    cur = shapes(900, current=True, seed=8)
    columns = list(kinds)
    ours = dataset_drift(ref, cur, columns=columns, kinds=kinds)  # type: ignore[arg-type]
    theirs = evidently_drift(ref, cur, columns, kinds)  # type: ignore[arg-type]
    assert_agrees(ours, theirs)


def test_five_row_windows_match_evidently() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=5), "k": ["a", "b", "a", "a", "b"], "i": [1, 2, 3, 2, 1]})
    cur = pd.DataFrame({"x": rng.normal(1, 1, 5), "k": ["b", "b", "b", "a", "b"], "i": [3, 3, 3, 2, 3]})
    assert_agrees(dataset_drift(ref, cur, columns=["x", "k", "i"]), evidently_drift(ref, cur, ["x", "k", "i"], None))


def test_prepared_reference_gives_the_same_verdicts_as_evidently() -> None:
    ref = shapes(3000, current=False, seed=11)
    cur = shapes(2000, current=True, seed=12)
    columns = list(ref.columns)
    # Prepared kinds come from the reference; evidently is told the same kinds.
    prepared = PreparedReference.prepare(ref, columns=columns)
    assert_agrees(prepared.compare(cur), evidently_drift(ref, cur, columns, prepared.kinds))


def test_kind_inference_follows_evidently() -> None:
    rng = np.random.default_rng(2)
    n = 40
    frame = pd.DataFrame(
        {
            "floats": rng.normal(size=n),
            "float32": rng.normal(size=n).astype(np.float32),
            "int_10u": np.arange(n) % 10,
            "int_11u": np.arange(n) % 11,
            "int8": (np.arange(n) % 30).astype(np.int8),
            "strings_few": rng.choice(["a", "b"], n),
            "category": pd.Categorical(rng.choice(["a", "b"], n)),
            "boolean": rng.random(n) < 0.5,
        }
    )
    theirs = evidently_inferred_kinds(frame)
    expected = {"num": "numerical", "cat": "categorical"}
    for column in frame.columns:
        assert infer_kind(frame[column]) == expected[theirs[column]], column


def column_by_name(result: DatasetDrift, name: str) -> ColumnDrift:
    return next(c for c in result.columns if c.column == name)


def test_inference_uses_the_current_window_like_evidently() -> None:
    # Integers with many values in the reference but few in the window: evidently infers from the
    # current dataset, so the column is categorical (and so are we, without kinds).
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"v": rng.integers(0, 100, 2000)})
    cur = pd.DataFrame({"v": rng.integers(0, 8, 300)})
    ours = dataset_drift(ref, cur, columns=["v"])
    assert column_by_name(ours, "v").kind == "categorical"
    assert_agrees(ours, evidently_drift(ref, cur, ["v"], None))


def test_evidently_html_report_is_a_self_contained_page() -> None:
    from metrics.evidently_adapter import evidently_html_report

    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 200), "city": rng.choice(["a", "b"], 200)})
    cur = pd.DataFrame({"age": rng.normal(45, 10, 150), "city": rng.choice(["a", "b"], 150)})
    html = evidently_html_report(ref, cur, ["age", "city"], None)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "age" in html and "city" in html
