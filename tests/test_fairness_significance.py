"""Wilson intervals, and a significance flag that small unbiased groups do not trip but real gaps do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from metrics.fairness import fairness, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 31), (500, 1000), (1, 2000)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_intervals_are_wilson_score_intervals(k: int, n: int, level: float) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    low, high = wilson_interval(k, n, ci_level=level)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_group_intervals_use_the_rate_denominators() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 10})
    y_true = pd.Series([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    y_pred = pd.Series([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    (group,) = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive, min_group_size=0).groups
    assert group.selection_rate_ci == wilson_interval(4, 10)
    assert group.true_positive_rate_ci == wilson_interval(3, 4)
    assert group.false_positive_rate_ci == wilson_interval(1, 6)


def _unbiased_window(seed: int) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sizes = {"large": 3000, "medium": 400, "small_1": 30, "small_2": 35, "small_3": 40}
    groups = np.concatenate([[name] * size for name, size in sizes.items()])
    y_true = rng.random(len(groups)) < 0.4
    # The same model quality in every group: predictions depend on the label only.
    y_pred = np.where(y_true, rng.random(len(groups)) < 0.7, rng.random(len(groups)) < 0.2)
    return pd.Series(y_pred.astype(int)), pd.Series(y_true.astype(int)), pd.DataFrame({"g": groups})


def test_small_unbiased_groups_rarely_look_significant() -> None:
    alarms = {name: 0 for name in ("demographic_parity_difference", "equalized_odds_difference")}
    raw_gaps = []
    seeds = 200
    for seed in range(seeds):
        y_pred, y_true, sensitive = _unbiased_window(seed)
        result = fairness(y_pred=y_pred, y_true=y_true, sensitive=sensitive)
        raw_gaps.append(result.metrics["demographic_parity_difference"])
        for name in alarms:
            alarms[name] += result.significant[name]
    # Chance alone gives the small groups sizeable gaps, which is why the flag exists.
    assert np.median(raw_gaps) > 0.1
    for name, count in alarms.items():
        assert count / seeds <= 0.05, f"{name}: {count} false alarms in {seeds} windows"


def test_a_real_gap_between_large_groups_is_significant() -> None:
    flagged = 0
    seeds = 50
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        groups = np.array(["a"] * 500 + ["b"] * 500)
        y_true = rng.random(1000) < 0.5
        rate = np.where(groups == "a", 0.7, 0.45)
        y_pred = np.where(y_true, rng.random(1000) < rate, rng.random(1000) < rate - 0.3)
        result = fairness(
            y_pred=pd.Series(y_pred.astype(int)),
            y_true=pd.Series(y_true.astype(int)),
            sensitive=pd.DataFrame({"g": groups}),
        )
        flagged += all(result.significant.values())
    assert flagged / seeds >= 0.95


def test_a_large_gap_in_a_group_below_the_minimum_size_is_not_significant() -> None:
    sensitive = pd.DataFrame({"g": ["a"] * 200 + ["b"] * 200 + ["c"] * 10})
    y_pred = pd.Series([1] * 100 + [0] * 100 + [1] * 100 + [0] * 100 + [1] * 10)
    result = fairness(y_pred=y_pred, sensitive=sensitive, min_group_size=30)
    assert result.metrics["demographic_parity_difference"] == 0.0
    assert result.significant["demographic_parity_difference"] is False
