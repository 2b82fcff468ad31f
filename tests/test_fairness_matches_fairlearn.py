"""Our fairness numbers equal fairlearn 0.15's (MetricFrame and the gap metrics) to 1e-12."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from metrics.fairness import fairness

TOL = 1e-12


@dataclass
class Case:
    y_true: pd.Series
    y_pred: pd.Series
    sensitive: pd.DataFrame
    pos_label: object
    threshold: float | None
    truth01: np.ndarray  # the reference's own binarisation, independent of ours
    pred01: np.ndarray
    form: str


def make_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 1500))
    n_a = int(rng.integers(2, 7))
    weights = rng.dirichlet(np.ones(n_a) * 0.7)
    sex = rng.choice([f"g{i}" for i in range(n_a)], size=n, p=weights)
    columns = {"a": sex}
    if rng.random() < 0.4:
        columns["b"] = rng.choice(["young", "old", "mid"][: int(rng.integers(2, 4))], size=n)
    sensitive = pd.DataFrame(columns)

    base = rng.uniform(0.05, 0.95)
    truth = rng.random(n) < base
    score = np.clip(rng.normal(0.5, 0.25, n) + 0.3 * (truth - 0.5), 0.0, 1.0)
    if rng.random() < 0.35:
        # A group with no positive labels, or no negatives: the rate edge cases.
        victim = sensitive["a"].to_numpy() == "g0"
        truth = np.where(victim, rng.random() < 0.5, truth)

    form = ["int", "str", "score_threshold", "score_auto", "bool_str_pos"][seed % 5]
    threshold: float | None = None
    pos_label: object = 1
    if form == "int":
        pred01 = score >= 0.5
        y_pred = pd.Series(pred01.astype(int))
        y_true = pd.Series(truth.astype(int))
    elif form in ("str", "bool_str_pos"):
        pred01 = score >= 0.5
        pos_label = "yes"
        y_pred = pd.Series(np.where(pred01, "yes", "no"))
        y_true = pd.Series(np.where(truth, "yes", "no"))
        if form == "bool_str_pos":
            # Negative class split into two names: one-vs-rest for "yes".
            y_pred = y_pred.where(pred01 | (rng.random(n) < 0.5), "maybe")
    elif form == "score_threshold":
        threshold = float(rng.uniform(0.3, 0.7))
        pred01 = score >= threshold
        y_pred = pd.Series(score)
        y_true = pd.Series(truth.astype(int))
    else:
        pred01 = score >= 0.5
        y_pred = pd.Series(score)
        y_true = pd.Series(truth.astype(float))
    return Case(y_true, y_pred, sensitive, pos_label, threshold, truth, pred01, form)


def fairlearn_by_group(case: Case) -> pd.DataFrame:
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "count": count,
        },
        y_true=case.truth01.astype(int),
        y_pred=case.pred01.astype(int),
        sensitive_features=case.sensitive,
    )
    by_group = frame.by_group.dropna(subset=["count"])
    if isinstance(by_group.index, pd.MultiIndex):
        by_group.index = ["+".join(str(v) for v in key) for key in by_group.index]
    return by_group


def fairlearn_gaps(truth01: np.ndarray, pred01: np.ndarray, sensitive: pd.DataFrame) -> dict[str, float]:
    args = (truth01.astype(int), pred01.astype(int))
    return {
        "demographic_parity_difference": demographic_parity_difference(*args, sensitive_features=sensitive),
        "demographic_parity_ratio": demographic_parity_ratio(*args, sensitive_features=sensitive),
        "equalized_odds_difference": equalized_odds_difference(*args, sensitive_features=sensitive),
        "equal_opportunity_difference": equal_opportunity_difference(*args, sensitive_features=sensitive),
    }


def assert_close(ours: float, theirs: float, what: str) -> None:
    if math.isnan(theirs):
        assert math.isnan(ours), f"{what}: fairlearn nan, ours {ours}"
    else:
        assert abs(ours - theirs) <= TOL, f"{what}: ours {ours!r}, fairlearn {theirs!r}"


@pytest.mark.parametrize("seed", range(40))
def test_group_rates_and_gaps_equal_fairlearn(seed: int) -> None:
    case = make_case(seed)
    ours = fairness(
        y_pred=case.y_pred,
        y_true=case.y_true,
        sensitive=case.sensitive,
        pos_label=case.pos_label,
        threshold=case.threshold,
        min_group_size=0,
    )
    expected = fairlearn_by_group(case)
    assert [g.group for g in ours.groups] == sorted(expected.index)
    for stats in ours.groups:
        row = expected.loc[stats.group]
        assert stats.count == int(row["count"])
        assert_close(stats.selection_rate, float(row["selection_rate"]), f"{stats.group} selection_rate")
        assert_close(stats.true_positive_rate, float(row["tpr"]), f"{stats.group} tpr")
        assert_close(stats.false_positive_rate, float(row["fpr"]), f"{stats.group} fpr")
    gaps = fairlearn_gaps(case.truth01, case.pred01, case.sensitive)
    for name, value in gaps.items():
        assert_close(ours.metrics[name], float(value), name)
    assert ours.status == "ok"
    assert ours.judged_groups == len(ours.groups)


@pytest.mark.parametrize("seed", range(6))
def test_gaps_cover_the_judged_groups_exactly_as_fairlearn_on_those_rows(seed: int) -> None:
    case = make_case(100 + seed * 5)  # integer labels
    min_size = 80
    ours = fairness(y_pred=case.y_pred, y_true=case.y_true, sensitive=case.sensitive, min_group_size=min_size)
    judged = {g.group for g in ours.groups if g.count >= min_size}
    assert {g.group for g in ours.groups if g.judged} == judged
    if len(judged) < 2:
        assert ours.status == "insufficient_data"
        assert all(math.isnan(v) for v in ours.metrics.values())
        return
    names = case.sensitive.astype(str).agg("+".join, axis=1).to_numpy()
    rows = np.isin(names, sorted(judged))
    gaps = fairlearn_gaps(case.truth01[rows], case.pred01[rows], case.sensitive[rows].reset_index(drop=True))
    for name, value in gaps.items():
        assert_close(ours.metrics[name], float(value), name)


def test_string_labels_with_pos_label_equal_fairlearn_on_the_raw_labels() -> None:
    rng = np.random.default_rng(7)
    n = 900
    sensitive = pd.DataFrame({"region": rng.choice(["north", "south", "east"], n)})
    y_true = pd.Series(rng.choice(["approve", "deny"], n))
    y_pred = pd.Series(rng.choice(["approve", "deny"], n, p=[0.3, 0.7]))
    frame = MetricFrame(
        metrics={
            "selection_rate": partial(selection_rate, pos_label="approve"),
            "tpr": partial(true_positive_rate, pos_label="approve"),
            "fpr": partial(false_positive_rate, pos_label="approve"),
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive,
    )
    ours = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive, pos_label="approve")
    for stats in ours.groups:
        row = frame.by_group.loc[stats.group]
        assert_close(stats.selection_rate, float(row["selection_rate"]), "selection_rate")
        assert_close(stats.true_positive_rate, float(row["tpr"]), "tpr")
        assert_close(stats.false_positive_rate, float(row["fpr"]), "fpr")


def test_group_without_positive_labels_has_tpr_zero_like_fairlearn() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 4})
    y_true = pd.Series([1, 0, 1, 0, 0, 0, 0, 0])
    y_pred = pd.Series([1, 1, 0, 0, 1, 0, 0, 0])
    ours = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive, min_group_size=0)
    b = next(g for g in ours.groups if g.group == "b")
    assert b.true_positive_rate == 0.0
    assert b.positives == 0
    assert b.true_positive_rate_ci == (0.0, 1.0)
    expected = equal_opportunity_difference(y_true, y_pred, sensitive_features=sensitive)
    assert ours.metrics["equal_opportunity_difference"] == pytest.approx(expected, abs=TOL)
    assert ours.significant["equal_opportunity_difference"] is False


def test_all_zero_selection_gives_nan_ratio_like_fairlearn() -> None:
    sensitive = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    y_pred = pd.Series([0, 0, 0, 0])
    y_true = pd.Series([0, 1, 0, 1])
    ours = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive, min_group_size=0)
    theirs = demographic_parity_ratio(y_true, y_pred, sensitive_features=sensitive)
    assert math.isnan(theirs)
    assert math.isnan(ours.metrics["demographic_parity_ratio"])
    assert ours.metrics["demographic_parity_difference"] == 0.0
