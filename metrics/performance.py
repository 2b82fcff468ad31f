"""Model performance against labels: scikit-learn's classification and regression metrics, in numpy.

Values equal scikit-learn's (``accuracy_score``, ``precision_score``, ``recall_score``, ``f1_score``,
``roc_auc_score``, ``log_loss``, ``brier_score_loss``; ``mean_absolute_error``,
``root_mean_squared_error``, ``r2_score``) wherever scikit-learn defines them. Where it does not, we
return nan and carry on, because a monitoring window is allowed to be degenerate:

* precision with no predicted positives, recall with no actual positives, f1 with neither: nan
  (scikit-learn's ``zero_division=np.nan``; its default returns 0.0 with a warning);
* roc_auc when the window holds one class only: nan (as scikit-learn, which also warns);
* log_loss and brier when the scores are not probabilities in [0, 1]: nan (scikit-learn raises);
* r2 with fewer than two rows or a constant ``y_true``: nan (scikit-learn's default reports 1.0 or 0.0
  there, which reads as a verdict on data that cannot support one).

Rows where any given input is missing are dropped before anything is computed (for regression, also
rows with an infinite value); ``count`` says how many rows were used.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from config.errors import MetricInputError
from metrics.fairness import matches_label

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def classification_metrics(
    *,
    y_true: pd.Series,
    y_pred: pd.Series,
    y_score: pd.Series | None = None,
    pos_label: object = 1,
) -> dict[str, float]:
    """Accuracy, precision, recall, f1 and ``count``; with ``y_score`` also roc_auc, log_loss and brier.

    ``y_true`` and ``y_pred`` are class labels; precision, recall and f1 are those of ``pos_label``
    against every other class (scikit-learn's ``average="binary"``, which it only allows for two
    classes). ``y_score`` is the predicted probability (or any score, for roc_auc) of ``pos_label``.
    A text ``pos_label`` such as ``"1"`` also matches numeric labels (see ``metrics.fairness.binarise``).
    """
    truth = _series(y_true, "y_true")
    pred = _series(y_pred, "y_pred")
    _same_length(truth, pred, "y_pred")
    keep = truth.notna().to_numpy() & pred.notna().to_numpy()
    score: FloatArray | None = None
    if y_score is not None:
        score_series = _series(y_score, "y_score")
        _same_length(truth, score_series, "y_score")
        score = _numeric(score_series, "y_score")
        keep &= ~np.isnan(score)
    if not keep.all():
        truth, pred = truth[keep], pred[keep]
        score = score[keep] if score is not None else None

    n = len(truth)
    result: dict[str, float] = {"count": float(n)}
    actual = matches_label(truth, pos_label)
    predicted = matches_label(pred, pos_label)
    tp = int(np.count_nonzero(actual & predicted))
    fp = int(np.count_nonzero(~actual & predicted))
    fn = int(np.count_nonzero(actual & ~predicted))
    result["accuracy"] = float(np.count_nonzero(_same_values(truth, pred)) / n) if n else math.nan
    result["precision"] = _divide(tp, tp + fp)
    result["recall"] = _divide(tp, tp + fn)
    result["f1"] = _divide(2 * tp, 2 * tp + fp + fn)
    if score is not None:
        result["roc_auc"] = _roc_auc(actual, score)
        probabilities = n > 0 and bool(np.all((score >= 0.0) & (score <= 1.0)))
        result["log_loss"] = _log_loss(actual, score) if probabilities else math.nan
        result["brier"] = _brier(actual, score) if probabilities else math.nan
    return result


def regression_metrics(*, y_true: pd.Series, y_pred: pd.Series) -> dict[str, float]:
    """Mean absolute error, root mean squared error, r2 and ``count`` over rows with finite values."""
    truth_series = _series(y_true, "y_true")
    pred_series = _series(y_pred, "y_pred")
    _same_length(truth_series, pred_series, "y_pred")
    truth = _numeric(truth_series, "y_true")
    pred = _numeric(pred_series, "y_pred")
    keep = np.isfinite(truth) & np.isfinite(pred)
    truth, pred = truth[keep], pred[keep]
    n = len(truth)
    if n == 0:
        return {"count": 0.0, "mae": math.nan, "rmse": math.nan, "r2": math.nan}
    error = truth - pred
    result = {
        "count": float(n),
        "mae": float(np.mean(np.abs(pred - truth))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": math.nan,
    }
    if n >= 2:
        residual = float(np.sum(error**2))
        spread = float(np.sum((truth - np.mean(truth)) ** 2))
        if spread > 0.0:
            result["r2"] = 1.0 - residual / spread
    return result


# --- internals -------------------------------------------------------------------------------------


def _series(values: pd.Series | npt.NDArray[Any], what: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{what} must be one-dimensional, got shape {array.shape}")
    return pd.Series(array)


def _same_length(truth: pd.Series, other: pd.Series, what: str) -> None:
    if len(truth) != len(other):
        raise MetricInputError(f"y_true has {len(truth)} rows but {what} has {len(other)}")


def _numeric(series: pd.Series, what: str) -> FloatArray:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return _floats(series)
    try:
        return _floats(pd.to_numeric(series, errors="raise"))
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{what} must be numeric, got dtype {dtype}") from exc


def _same_values(truth: pd.Series, pred: pd.Series) -> BoolArray:
    """Elementwise label equality, across categoricals with different category sets as well."""
    if isinstance(truth.dtype, pd.CategoricalDtype):
        truth = truth.astype(object)
    if isinstance(pred.dtype, pd.CategoricalDtype):
        pred = pred.astype(object)
    return np.asarray(truth.eq(pred).to_numpy(dtype=np.bool_), dtype=np.bool_)


def _divide(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _roc_auc(actual: BoolArray, score: FloatArray) -> float:
    """Mann-Whitney form of the area under the ROC curve; tied scores count half, as in scikit-learn."""
    positives = int(np.count_nonzero(actual))
    negatives = len(actual) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # Average rank (1-based) of each distinct score: the ranks it spans, averaged.
    ends = np.cumsum(counts).astype(np.float64)
    average_rank = ends - (counts - 1) / 2.0
    rank_sum = float(np.sum(average_rank[inverse][actual]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _log_loss(actual: BoolArray, score: FloatArray) -> float:
    # scikit-learn clips both columns [1 - p, p] to [eps, 1 - eps]; clipping 1 - p (not 1 - clip(p))
    # is what keeps us equal to it to the last bits.
    eps = np.finfo(np.float64).eps
    p = np.clip(score, eps, 1 - eps)
    q = np.clip(1.0 - score, eps, 1 - eps)
    loss = -np.where(actual, np.log(p), np.log(q))
    return float(np.mean(loss))


def _brier(actual: BoolArray, score: FloatArray) -> float:
    return float(np.mean((actual.astype(np.float64) - score) ** 2))


def _floats(series: pd.Series) -> FloatArray:
    """The values as a float64 array, missing values (None, NA, NaN) as nan."""
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
