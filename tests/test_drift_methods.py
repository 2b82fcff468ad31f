"""Every named drift method agrees with evidently's stattest of the same name, and bad requests fail clearly."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import MetricInputError
from metrics.drift import (
    DriftSpec,
    PreparedReference,
    available_methods,
    column_drift,
    dataset_drift,
)
from metrics.evidently_adapter import evidently_drift, evidently_stattest
from metrics.names import METHOD_KINDS
from metrics.stattests import REGISTRY

REL = 1e-9

NUMERICAL = [
    "ks",
    "wasserstein",
    "jensenshannon",
    "psi",
    "kl_div",
    "hellinger",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "t_test",
    "es",
    "ed",
]
FLOAT32_LOOSE = {"mannw", "t_test", "es"}
CATEGORICAL = ["chisquare", "z", "jensenshannon", "psi", "kl_div", "hellinger", "TVD"]


def same_score(ours: float, theirs: float, rel: float = REL) -> bool:
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return math.isclose(ours, theirs, rel_tol=rel, abs_tol=0.0)


def numeric_shapes(n: int, rng: np.random.Generator, *, current: bool) -> dict[str, np.ndarray]:
    shift = 0.3 if current else 0.0
    return {
        "normal": rng.normal(shift, 1, n),
        "same": rng.normal(0, 1, n),
        "lognormal": rng.lognormal(shift, 1, n),
        "ties": np.round(rng.normal(shift, 1, n), 1),  # > 20 distinct values, many ties
        "few": rng.integers(0, 8 + int(current), n).astype(float),  # <= 20 distinct: one bin per value
        "integers": rng.integers(0, 60, n) + (3 if current else 0),  # integer Sturges bins
        "float32": rng.lognormal(shift, 1, n).astype(np.float32),  # float32 bins and std
    }


def categorical_shapes(n: int, rng: np.random.Generator, *, current: bool) -> dict[str, np.ndarray]:
    p = [0.2, 0.3, 0.5] if current else [0.3, 0.3, 0.4]
    return {
        "three": rng.choice(["a", "b", "c"], n, p=p),
        "unseen": rng.choice(["a", "b", "c", "d"] if current else ["a", "b", "c"], n),
        "binary": rng.choice(["x", "y"], n, p=[0.55, 0.45] if current else [0.5, 0.5]),
    }


def method_frames(
    n_ref: int, n_cur: int, seed: int, numerical: list[str], categorical: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], dict[str, str]]:
    """One column per (method, shape), so a single evidently report covers every method."""
    frames = []
    for n, current in ((n_ref, False), (n_cur, True)):
        rng = np.random.default_rng(seed + int(current))
        num, cat = numeric_shapes(n, rng, current=current), categorical_shapes(n, rng, current=current)
        # float32 columns: see test_float32_tests_agree_to_float32_precision for these three.
        cols = {f"{m}|{s}": v for m in numerical for s, v in num.items() if s != "float32" or m not in FLOAT32_LOOSE}
        # Fisher's exact test is only defined for binary columns.
        cols |= {f"{m}|{s}|cat": v for m in categorical for s, v in cat.items() if m != "fisher_exact" or s == "binary"}
        frames.append(pd.DataFrame(cols))
    methods = {c: c.split("|")[0] for c in frames[0].columns}
    kinds = {c: "categorical" if c.endswith("|cat") else "numerical" for c in frames[0].columns}
    return frames[0], frames[1], methods, kinds


def tvd_tie_range(ref: pd.Series, cur: pd.Series) -> tuple[float, float]:
    """TVD permutation p-values counting only strictly larger distances, and counting exact ties too.

    Evidently sums floats in a set's iteration order (which follows the process's string hash seed),
    so each permutation whose distance exactly equals the observed one may or may not count; a
    distinct distance differs by at least 1 / (2nm), far beyond rounding. Its p-value therefore lies
    in this range, and ours, which decides ties exactly, is the upper end.
    """
    codes, _ = pd.factorize(pd.concat([ref, cur], ignore_index=True))
    n, m, k = len(ref), len(cur), codes.max() + 1
    total = np.bincount(codes, minlength=k)

    def scaled(ref_counts: np.ndarray) -> int:
        return int(np.abs(ref_counts * m - (total - ref_counts) * n).sum())

    observed = scaled(np.bincount(codes[:n], minlength=k))
    rng = np.random.RandomState(0)
    draws = [scaled(np.bincount(codes[rng.permutation(n + m)[:n]], minlength=k)) for _ in range(1000)]
    return sum(d > observed for d in draws) / 1000, sum(d >= observed for d in draws) / 1000


def assert_methods_agree(n_ref: int, n_cur: int, seed: int, numerical: list[str], categorical: list[str]) -> None:
    ref, cur, methods, kinds = method_frames(n_ref, n_cur, seed, numerical, categorical)
    columns = list(ref.columns)
    ours = dataset_drift(ref, cur, columns=columns, kinds=kinds, spec=DriftSpec(per_column_method=methods))  # type: ignore[arg-type]
    theirs = evidently_drift(ref, cur, columns, kinds, method=methods)  # type: ignore[arg-type]
    bad = []
    for col in ours.columns:
        method, score, drifted = theirs.columns[col.column]
        same_verdict = col.drifted == drifted
        if method == "TVD":
            strict, with_ties = tvd_tie_range(ref[col.column], cur[col.column])
            agree = col.score == with_ties and strict <= score <= with_ties
            same_verdict |= strict < col.threshold <= with_ties  # ties alone can decide evidently's verdict
        else:
            agree = same_score(col.score, score)
        if col.method != method or not same_verdict or not agree:
            bad.append((col.column, col.score, score, col.drifted, drifted))
    assert not bad, bad


def test_every_method_matches_evidently_on_small_samples() -> None:
    # 15 vs 12 values: the exact K-S, Mann-Whitney and Cramer-von Mises paths. Binned methods only
    # depend on the number of distinct values, which the medium samples cover.
    small_paths = ["ks", "cramer_von_mises", "mannw", "anderson", "es", "t_test", "wasserstein", "hellinger"]
    assert_methods_agree(15, 12, seed=1, numerical=small_paths, categorical=CATEGORICAL)


def test_every_method_matches_evidently_on_medium_samples() -> None:
    assert_methods_agree(900, 650, seed=2, numerical=NUMERICAL, categorical=CATEGORICAL[:-1])


def test_ks_and_distances_match_evidently_on_large_samples() -> None:
    # Above 10 000 values scipy's K-S switches to the asymptotic distribution, computed here from our merge.
    assert_methods_agree(12_000, 10_500, seed=3, numerical=["ks", "wasserstein", "ed", "t_test"], categorical=[])


def test_equal_size_tests_match_evidently() -> None:
    # evidently's g_test and fisher_exact only run when both sides have the same size.
    assert_methods_agree(150, 150, seed=4, numerical=[], categorical=["g_test", "fisher_exact", "TVD"])


@pytest.mark.parametrize("name", sorted(FLOAT32_LOOSE))
def test_float32_tests_agree_to_float32_precision(name: str) -> None:
    # scipy computes these in float32 and in row order for float32 input; we compute in float64.
    rng = np.random.default_rng(12)
    ref = pd.Series(rng.lognormal(0, 1, 900).astype(np.float32))
    cur = pd.Series(rng.lognormal(0.05, 1, 700).astype(np.float32))
    score, drifted = evidently_stattest(name, ref, cur, "numerical")
    ours = column_drift(ref, cur, kind="numerical", method=name)
    assert ours.score == pytest.approx(score, rel=1e-4)
    assert ours.drifted == drifted


def test_fisher_exact_accepts_different_sizes() -> None:
    from scipy.stats import fisher_exact

    ref = pd.Series(["x"] * 30 + ["y"] * 20)
    cur = pd.Series(["x"] * 10 + ["y"] * 25)
    result = column_drift(ref, cur, kind="categorical", method="fisher_exact")
    assert result.score == pytest.approx(fisher_exact([[10, 25], [30, 20]])[1], rel=REL)


def test_g_test_scales_expected_counts_to_the_current_size() -> None:
    from scipy.stats import power_divergence

    ref = pd.Series(["a"] * 60 + ["b"] * 40)
    cur = pd.Series(["a"] * 20 + ["b"] * 30)
    result = column_drift(ref, cur, kind="categorical", method="g_test")
    expected = power_divergence([20, 30], [30, 20], lambda_="log-likelihood")[1]
    assert result.score == pytest.approx(expected, rel=REL)


def test_empirical_mmd_matches_evidently_permutations_under_seed_zero() -> None:
    rng = np.random.default_rng(6)
    ref, cur = pd.Series(rng.normal(size=150)), pd.Series(rng.normal(0.2, 1, size=120))
    np.random.seed(0)  # evidently draws from the global generator; ours is RandomState(0)
    score, drifted = evidently_stattest("empirical_mmd", ref, cur, "numerical")
    ours = column_drift(ref, cur, kind="numerical", method="empirical_mmd")
    assert (ours.score, ours.drifted) == (score, drifted)


def test_empirical_mmd_in_a_report_is_within_permutation_noise() -> None:
    # In a report evidently's MMD draws from the global generator wherever other columns left it,
    # so its p-value is a different 100-permutation estimate of the same permutation p-value. Each
    # estimate has a standard deviation of at most 0.05; their difference at most 0.071. 0.3 is
    # over four standard deviations.
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"v": rng.normal(size=300)})
    cur = pd.DataFrame({"v": rng.normal(0.1, 1, size=250)})
    ours = dataset_drift(ref, cur, columns=["v"], spec=DriftSpec(method="empirical_mmd"))
    theirs = evidently_drift(ref, cur, ["v"], {"v": "numerical"}, method="empirical_mmd")
    method, score, _ = theirs.columns["v"]
    assert ours.columns[0].method == method
    assert abs(ours.columns[0].score - score) <= 0.3


def test_empirical_mmd_caps_large_samples_and_stays_deterministic() -> None:
    rng = np.random.default_rng(8)
    ref, cur = pd.Series(rng.normal(size=5000)), pd.Series(rng.normal(1, 1, size=4000))
    first = column_drift(ref, cur, method="empirical_mmd")
    again = column_drift(ref.sample(frac=1, random_state=1), cur, method="empirical_mmd")
    assert first.score == again.score == 0.0
    assert first.drifted


def test_every_registered_name_is_available() -> None:
    assert set(available_methods()) == set(REGISTRY)
    # config validation's table of names (no numpy) is the registry's, kinds included
    assert {name: frozenset(t.kinds) for name, t in REGISTRY.items()} == METHOD_KINDS
    assert {
        "ks",
        "chisquare",
        "z",
        "wasserstein",
        "jensenshannon",
        "psi",
        "kl_div",
        "hellinger",
        "anderson",
        "cramer_von_mises",
        "mannw",
        "t_test",
        "TVD",
        "ed",
        "empirical_mmd",
        "fisher_exact",
        "g_test",
    } <= set(available_methods())


def test_default_thresholds_and_comparisons_are_evidentlys() -> None:
    from metrics.evidently_adapter import _name_by_display_name  # the adapter knows evidently's registry

    assert set(_name_by_display_name().values()) - {"perc_text_content_drift", "abs_text_content_drift"} == set(
        REGISTRY
    )
    for name, test in REGISTRY.items():
        kind = "numerical" if "numerical" in test.kinds else "categorical"
        ref = pd.Series([0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0] * 3)
        cur = pd.Series([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0] * 3)
        if name == "fisher_exact":
            ref, cur = (ref > 1).astype(float), (cur > 2).astype(float)
        kinds = {"v": kind}
        theirs = evidently_drift(ref.to_frame("v"), cur.to_frame("v"), ["v"], kinds, method=name)  # type: ignore[arg-type]
        ours = column_drift(ref, cur, kind=kind, method=name)  # type: ignore[arg-type]
        assert ours.threshold == test.default_threshold
        if name != "empirical_mmd":
            assert ours.drifted == theirs.columns["v"][2], name


# --- property tests against evidently's stattests, called directly --------------------------------------

PROPERTY_NUMERICAL = ["ks", "wasserstein", "ed", "jensenshannon", "psi", "kl_div", "hellinger", "mannw"]
PROPERTY_NUMERICAL += ["cramer_von_mises", "anderson"]
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ref=st.lists(finite_floats, min_size=2, max_size=60),
    cur=st.lists(finite_floats, min_size=2, max_size=60),
    name=st.sampled_from(PROPERTY_NUMERICAL),
)
def test_numerical_methods_match_evidently_on_arbitrary_samples(ref: list[float], cur: list[float], name: str) -> None:
    r, c = pd.Series(ref, dtype=float), pd.Series(cur, dtype=float)
    try:
        score, drifted = evidently_stattest(name, r, c, "numerical")
    except (ValueError, TypeError):
        return  # evidently raises on some degenerate samples; ours does not (tested below)
    if name == "cramer_von_mises" and len(set(ref) | set(cur)) == 1:
        return  # identical constant samples: p = 1 by design (see metrics.stattests)
    ours = column_drift(r, c, kind="numerical", method=name)
    assert same_score(ours.score, score, rel=1e-9), (ours.score, score)
    assert ours.drifted == drifted


@settings(max_examples=40, deadline=None)
@given(
    ref=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=50),
    cur=st.lists(st.sampled_from(["a", "b", "c", "e"]), min_size=1, max_size=50),
    name=st.sampled_from(["chisquare", "z", "jensenshannon", "psi", "kl_div", "hellinger"]),
)
def test_categorical_methods_match_evidently_on_arbitrary_samples(ref: list[str], cur: list[str], name: str) -> None:
    r, c = pd.Series(ref), pd.Series(cur)
    score, drifted = evidently_stattest(name, r, c, "categorical")
    ours = column_drift(r, c, kind="categorical", method=name)
    assert same_score(ours.score, score), (ours.score, score)
    assert ours.drifted == drifted


# --- errors and awkward inputs -------------------------------------------------------------------------


def test_unknown_method_is_a_metric_input_error() -> None:
    with pytest.raises(MetricInputError, match="unknown drift method 'kss'"):
        column_drift(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0]), method="kss")


@pytest.mark.parametrize(("method", "kind"), [("ks", "categorical"), ("chisquare", "numerical"), ("TVD", "numerical")])
def test_method_for_the_other_kind_is_rejected(method: str, kind: str) -> None:
    with pytest.raises(MetricInputError, match="does not apply"):
        column_drift(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0]), kind=kind, method=method)  # type: ignore[arg-type]


def test_missing_column_is_rejected_before_any_work() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(MetricInputError, match="'b'"):
        dataset_drift(frame, frame, columns=["a", "b"])
    prepared = PreparedReference.prepare(frame, columns=["a"])
    with pytest.raises(MetricInputError, match="current data has no column 'a'"):
        prepared.compare(pd.DataFrame({"z": [1.0]}))


def test_fisher_exact_on_three_values_is_rejected() -> None:
    with pytest.raises(MetricInputError, match="binary"):
        column_drift(pd.Series(["a", "b"]), pd.Series(["a", "c"]), method="fisher_exact")


def test_text_in_a_numerical_column_is_rejected() -> None:
    with pytest.raises(MetricInputError, match="non-numeric"):
        column_drift(pd.Series(["1", "x"]), pd.Series(["2", "y"]), kind="numerical")


def test_empty_side_is_insufficient_data_not_an_error() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    cur = pd.DataFrame({"a": [np.nan, np.inf, None], "b": [None, None, None]})
    result = dataset_drift(ref, cur, columns=["a", "b"], kinds={"a": "numerical", "b": "categorical"})
    for col in result.columns:
        assert col.status == "insufficient_data"
        assert not col.drifted
        assert math.isnan(col.score)
        assert col.current_rows == 0
    assert (result.drifted_count, result.share, result.dataset_drift) == (0, 0.0, False)


def test_insufficient_columns_are_not_judged() -> None:
    ref = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0)})
    cur = pd.DataFrame({"a": np.arange(50.0) + 100, "b": np.full(50, np.nan)})
    result = dataset_drift(ref, cur, columns=["a", "b"], kinds={"a": "numerical", "b": "numerical"})
    assert (result.drifted_count, result.share, result.dataset_drift) == (1, 1.0, True)


def test_single_row_windows_and_tests_that_need_two() -> None:
    ref, cur = pd.Series(np.linspace(0, 1, 40)), pd.Series([0.5])
    assert column_drift(ref, cur).status == "ok"
    result = column_drift(ref, cur, method="cramer_von_mises")
    assert (result.status, result.drifted) == ("insufficient_data", False)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_no_method_crashes_on_constant_columns(method: str) -> None:
    test = REGISTRY[method]
    kind = "numerical" if "numerical" in test.kinds else "categorical"
    result = column_drift(pd.Series([2.0] * 30), pd.Series([2.0] * 20), kind=kind, method=method)  # type: ignore[arg-type]
    assert not result.drifted


def test_awkward_dtypes_never_crash() -> None:
    n = 30
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {
            "mixed": pd.Series([1, "a", 2.5, None, True] * (n // 5), dtype=object),
            "object_numbers": pd.Series([1.5, 2, None] * (n // 3), dtype=object),
            "nullable_int": pd.array(rng.integers(0, 3, n), dtype="Int64"),
            "nullable_bool": pd.array(rng.random(n) < 0.5, dtype="boolean"),
            "category_numbers": pd.Categorical(rng.choice([1.0, 2.0, np.inf], n)),
            "uint": rng.integers(0, 50, n).astype(np.uint16),
        }
    )
    cur = ref.sample(frac=0.5, random_state=2).reset_index(drop=True)
    cur.loc[0, "mixed"] = "unseen"
    result = dataset_drift(ref, cur, columns=list(ref.columns))
    assert {c.status for c in result.columns} == {"ok"}
    assert PreparedReference.prepare(ref, columns=list(ref.columns)).compare(cur).columns == result.columns


def test_boolean_forced_numerical_is_read_as_zero_one() -> None:
    ref = pd.Series([True, False] * 20)
    cur = pd.Series([True] * 30 + [False] * 10)
    assert column_drift(ref, cur, kind="numerical").method == "z"


def test_datetime_columns_are_rejected() -> None:
    dates = pd.Series(pd.date_range("2024-01-01", periods=3))
    with pytest.raises(MetricInputError, match="dates"):
        column_drift(dates, dates)


# --- false-alarm control and the prepared reference -----------------------------------------------------


def test_benjamini_hochberg_judges_p_value_columns_together() -> None:
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(10)
    ref = pd.DataFrame({f"c{i}": rng.normal(size=400) for i in range(8)})
    cur = pd.DataFrame({f"c{i}": rng.normal(0.12 * (i % 4), 1, size=300) for i in range(8)})
    ref["dist"], cur["dist"] = rng.normal(size=400), rng.normal(2, 1, size=300)
    columns = list(ref.columns)
    per_column = {"dist": "wasserstein"}
    plain = dataset_drift(ref, cur, columns=columns, spec=DriftSpec(per_column_method=per_column))
    fdr = dataset_drift(ref, cur, columns=columns, spec=DriftSpec(per_column_method=per_column, fdr_alpha=0.05))
    p_cols = [c for c in plain.columns if c.is_p_value]
    adjusted = false_discovery_control([c.score for c in p_cols], method="bh")
    by_name = {c.column: c for c in fdr.columns}
    for col, adj in zip(p_cols, adjusted, strict=True):
        judged = by_name[col.column]
        assert judged.score == col.score  # the raw p-value stays the score
        assert judged.drifted == (adj <= 0.05)
        assert judged.drifted == (judged.score <= judged.threshold)
    assert by_name["dist"] == next(c for c in plain.columns if c.column == "dist")
    assert any(c.drifted for c in p_cols) and sum(c.drifted for c in fdr.columns) <= sum(
        c.drifted for c in plain.columns
    )


def test_prepared_reference_equals_one_shot_and_is_reusable() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(size=3000), "k": rng.choice(list("abc"), 3000)})
    prepared = PreparedReference.prepare(ref, columns=["x", "k"])
    assert (prepared.rows, prepared.kinds) == (3000, {"x": "numerical", "k": "categorical"})
    for shift in (0.0, 0.5):
        cur = pd.DataFrame({"x": rng.normal(shift, 1, 700), "k": rng.choice(list("abcd"), 700)})
        spec = DriftSpec(per_column_method={"x": "ks"}, threshold=0.2)
        assert prepared.compare(cur, spec) == dataset_drift(
            ref, cur, columns=["x", "k"], kinds=prepared.kinds, spec=spec
        )


DIGEST_SCRIPT = """
import numpy as np, pandas as pd
from metrics.drift import PreparedReference
ref = pd.DataFrame({"x": np.arange(100) / 7.0, "k": ["a", "b", "c", "d"] * 25})
print(PreparedReference.prepare(ref, columns=["x", "k"]).digest)
"""


def test_reference_digest_is_stable_across_processes_and_tracks_content() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    ref = pd.DataFrame({"x": np.arange(100) / 7.0, "k": ["a", "b", "c", "d"] * 25})
    here = PreparedReference.prepare(ref, columns=["x", "k"]).digest
    assert digests == {here}
    changed = ref.copy()
    changed.loc[3, "k"] = "z"
    assert PreparedReference.prepare(changed, columns=["x", "k"]).digest != here
    assert PreparedReference.prepare(ref, columns=["k", "x"]).digest != here


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)), min_size=1, max_size=60),
       st.lists(st.booleans(), min_size=60, max_size=60))
def test_jensen_shannon_distance_equals_scipys(weights: list[tuple[float, float]], zero: list[bool]) -> None:
    """Our Jensen-Shannon distance (no scipy import) is bit for bit scipy's, empty bins on either side included."""
    from scipy.spatial import distance

    from metrics.stattests import js_distance

    p = np.array([0.0 if z else a for (a, _), z in zip(weights, zero, strict=False)])
    q = np.array([b for _, b in weights])
    if p.sum() <= 0 or q.sum() <= 0:
        return
    ours, theirs = js_distance(p, q), float(distance.jensenshannon(p, q))
    assert ours == theirs


def test_wasserstein_and_jensen_shannon_need_no_scipy() -> None:
    """`auto` on large samples (wasserstein, jensenshannon) imports no scipy module: the whole process is
    what `compare` pays."""
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from metrics.drift import dataset_drift\n"
        "rng = np.random.default_rng(0)\n"
        "ref = pd.DataFrame({'x': rng.normal(size=5000), 'c': rng.choice(list('abc'), 5000)})\n"
        "cur = pd.DataFrame({'x': rng.normal(0.3, size=5000), 'c': rng.choice(list('abd'), 5000)})\n"
        "v = dataset_drift(ref, cur, columns=['x', 'c'])\n"
        "assert sorted(c.method for c in v.columns) == ['jensenshannon', 'wasserstein'], v\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
