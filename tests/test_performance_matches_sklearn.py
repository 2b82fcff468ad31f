"""Our performance metrics equal scikit-learn's to 1e-12, and degenerate windows give nan, not errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from config.errors import MetricInputError
from metrics.performance import classification_metrics, regression_metrics

TOL = 1e-12


def assert_close(ours: float, theirs: float, what: str) -> None:
    if math.isnan(theirs):
        assert math.isnan(ours), f"{what}: scikit-learn nan, ours {ours}"
    else:
        assert abs(ours - theirs) <= TOL, f"{what}: ours {ours!r}, scikit-learn {theirs!r}"


def sklearn_classification(
    y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray, pos_label: object
) -> dict[str, float]:
    actual = (y_true == pos_label).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": accuracy_score(y_true, y_pred),
            "precision": precision_score(y_true, y_pred, pos_label=pos_label, zero_division=np.nan),
            "recall": recall_score(y_true, y_pred, pos_label=pos_label, zero_division=np.nan),
            "f1": f1_score(y_true, y_pred, pos_label=pos_label, zero_division=np.nan),
            "roc_auc": roc_auc_score(actual, score),
            "log_loss": log_loss(actual, score, labels=[0, 1]),
            "brier": brier_score_loss(actual, score, pos_label=1),
        }


@pytest.mark.parametrize("seed", range(30))
def test_classification_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 3000))
    labels, pos_label = [(np.array([0, 1]), 1), (np.array(["no", "yes"]), "yes"), (np.array([3, 7]), 3)][seed % 3]
    actual = rng.random(n) < rng.uniform(0.05, 0.95)
    score = np.clip(rng.normal(0.5, 0.3, n) + 0.4 * (actual - 0.5), 0.0, 1.0)
    if seed % 4 == 0:
        score = np.round(score, 1)  # many ties, and exact 0 and 1, for roc_auc and log_loss
    predicted = score >= 0.5
    positive, negative = (labels[1], labels[0]) if pos_label == labels[1] else (labels[0], labels[1])
    y_true = np.where(actual, positive, negative)
    y_pred = np.where(predicted, positive, negative)
    ours = classification_metrics(
        y_true=pd.Series(y_true), y_pred=pd.Series(y_pred), y_score=pd.Series(score), pos_label=pos_label
    )
    assert ours["count"] == n
    for name, value in sklearn_classification(y_true, y_pred, score, pos_label).items():
        assert_close(ours[name], float(value), name)


def test_one_class_window_gives_nan_where_undefined_and_values_elsewhere() -> None:
    y_true = pd.Series([0, 0, 0, 0])
    y_pred = pd.Series([0, 1, 0, 0])
    score = pd.Series([0.1, 0.6, 0.2, 0.3])
    ours = classification_metrics(y_true=y_true, y_pred=y_pred, y_score=score)
    assert ours["accuracy"] == 0.75
    assert ours["precision"] == 0.0
    assert math.isnan(ours["recall"])
    assert ours["f1"] == 0.0
    assert math.isnan(ours["roc_auc"])
    assert ours["log_loss"] == pytest.approx(log_loss([0, 0, 0, 0], score, labels=[0, 1]), abs=TOL)
    assert ours["brier"] == pytest.approx(brier_score_loss([0, 0, 0, 0], score, pos_label=1), abs=TOL)


def test_no_predicted_positives_gives_nan_precision() -> None:
    ours = classification_metrics(y_true=pd.Series([1, 0, 1]), y_pred=pd.Series([0, 0, 0]))
    assert math.isnan(ours["precision"])
    assert ours["recall"] == 0.0
    assert ours["f1"] == 0.0
    assert "roc_auc" not in ours


def test_rows_with_a_missing_value_are_dropped_and_counted() -> None:
    y_true = pd.Series([1, 0, None, 1, 0], dtype="Int64")
    y_pred = pd.Series([1.0, 0.0, 1.0, np.nan, 1.0])
    score = pd.Series([0.9, 0.2, 0.8, 0.7, np.nan])
    ours = classification_metrics(y_true=y_true, y_pred=y_pred, y_score=score)
    assert ours["count"] == 2
    assert ours["accuracy"] == 1.0
    assert ours["roc_auc"] == 1.0


def test_scores_that_are_not_probabilities_still_rank_but_give_no_log_loss() -> None:
    y_true = np.array([0, 1, 1, 0, 1])
    logits = np.array([-2.0, 1.5, 0.3, 0.3, 4.0])
    ours = classification_metrics(
        y_true=pd.Series(y_true), y_pred=pd.Series((logits > 0).astype(int)), y_score=pd.Series(logits)
    )
    assert ours["roc_auc"] == pytest.approx(roc_auc_score(y_true, logits), abs=TOL)
    assert math.isnan(ours["log_loss"])
    assert math.isnan(ours["brier"])


def test_empty_window_gives_nan_and_count_zero() -> None:
    ours = classification_metrics(
        y_true=pd.Series([], dtype=int), y_pred=pd.Series([], dtype=int), y_score=pd.Series([], dtype=float)
    )
    assert ours["count"] == 0
    assert all(math.isnan(v) for k, v in ours.items() if k != "count")
    assert regression_metrics(y_true=pd.Series([], dtype=float), y_pred=pd.Series([], dtype=float))["count"] == 0


@pytest.mark.parametrize("seed", range(15))
def test_regression_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5000))
    y_true = rng.lognormal(3, 1, n)
    y_pred = y_true + rng.normal(0, 5, n)
    ours = regression_metrics(y_true=pd.Series(y_true), y_pred=pd.Series(y_pred))
    assert ours["count"] == n
    assert_close(ours["mae"], mean_absolute_error(y_true, y_pred), "mae")
    assert_close(ours["rmse"], root_mean_squared_error(y_true, y_pred), "rmse")
    assert_close(ours["r2"], r2_score(y_true, y_pred), "r2")


def test_regression_drops_missing_and_infinite_rows_and_constant_truth_gives_nan_r2() -> None:
    ours = regression_metrics(
        y_true=pd.Series([1.0, 2.0, np.nan, 4.0, np.inf]), y_pred=pd.Series([1.5, 2.0, 3.0, np.nan, 1.0])
    )
    assert ours["count"] == 2
    assert ours["mae"] == pytest.approx(0.25)
    constant = regression_metrics(y_true=pd.Series([2.0, 2.0, 2.0]), y_pred=pd.Series([1.0, 2.0, 3.0]))
    assert math.isnan(constant["r2"])
    assert constant["mae"] == pytest.approx(2 / 3)


def test_non_numeric_regression_inputs_and_length_mismatches_are_refused() -> None:
    with pytest.raises(MetricInputError):
        regression_metrics(y_true=pd.Series(["a", "b"]), y_pred=pd.Series([1.0, 2.0]))
    with pytest.raises(MetricInputError):
        classification_metrics(y_true=pd.Series([1, 0]), y_pred=pd.Series([1]))
