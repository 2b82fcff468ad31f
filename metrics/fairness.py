"""Group fairness with fairlearn's definitions, computed from one confusion-count table.

Every number here comes from a table of confusion counts per group (``tn, fp, fn, tp``) built with a
single ``np.bincount(group * 4 + y * 2 + pred)``. The table merges across chunks and can be produced by
a database ``GROUP BY``, so a window never has to be held in memory to be judged.

Definitions (equal to fairlearn 0.15 ``MetricFrame`` and its gap metrics, ``method="between_groups"``):

* selection rate ``(fp + tp) / count``; true positive rate ``tp / (fn + tp)``; false positive rate
  ``fp / (tn + fp)``. Like fairlearn (which uses scikit-learn's ``confusion_matrix(normalize="true")``
  and its ``nan_to_num``), a group with no positive labels has a true positive rate of **0.0**, not
  nan, and a group with no negative labels a false positive rate of 0.0. The rate's interval is then
  ``(0, 1)``, and the significance rule below never counts such a group as evidence. Without labels
  both rates are nan.
* ``demographic_parity_difference`` = max - min selection rate; ``demographic_parity_ratio`` =
  min / max (nan when every selection rate is 0, as fairlearn's 0/0); ``equal_opportunity_difference``
  = max - min true positive rate; ``equalized_odds_difference`` = the larger of the true and false
  positive rate differences (fairlearn's ``agg="worst_case"``).

Where this module goes beyond fairlearn:

* Gaps are taken over **judged** groups only, those with ``count >= min_group_size``; smaller groups are
  reported with their rates but cannot move a gap. With fewer than two judged groups the result is
  ``insufficient_data`` and every gap is nan (fairlearn would report 0 for a single group).
* Missing sensitive values (None, NaN, NA, NaT) form their own group named ``"(missing)"``; fairlearn
  refuses them. A real value spelled ``"(missing)"`` shares that group.
* Group names are the values as text (``str(value)``); values with the same text share a group. An
  intersection of several features is named by its values joined with ``"+"`` in feature order
  (``"F+young"``); only combinations that occur are groups.
* Rows with a missing prediction, or a missing label when labels are given, are dropped and counted in
  ``dropped``.
* Each rate carries a Wilson score interval at ``ci_level``, and each gap a ``significant`` flag.

The significance rule: a gap is significant when at least one pair of judged groups differs under a
two-sided two-proportion z-test (pooled variance, with continuity correction) at level
``alpha = 1 - ci_level``, Bonferroni-corrected over every pair tested (for equalized odds, over the true
and the false positive rate pairs together). Under "all groups share one rate" the chance of any
significant flag is at most about ``alpha``, however many groups there are, so small groups whose rates
wander by chance do not raise alarms. Pairs in which a group has no observations for the rate (no
positive labels, say) are not tested. Beyond ``_MAX_GROUPS_ALL_PAIRS`` judged groups only the pairs that
involve the highest or the lowest rate are tested, still against the full Bonferroni count, which keeps
the same guarantee while staying linear in the number of groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from config.errors import MetricInputError

MISSING_GROUP = "(missing)"
"""Name of the group of rows whose sensitive value is missing."""

GROUP_SEPARATOR = "+"
"""Joins feature names (``"sex+age_band"``) and group values (``"F+young"``) of an intersection."""

METRIC_NAMES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
)

# A dense count table (4 int64 per possible combination, 8 MiB here) up to this many combinations;
# beyond it the combinations that occur are found by sorting.
_DENSE_COMBINATIONS = 1 << 18
# All-pairs testing is quadratic; past this many judged groups the extremes-only test keeps it linear.
_MAX_GROUPS_ALL_PAIRS = 1500

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ArrayLike: TypeAlias = pd.Series | npt.NDArray[Any]
_KeyDecoder: TypeAlias = Callable[[IntArray], IntArray]


@dataclass(frozen=True)
class GroupStats:
    """Rates of one group (or one combination of groups) with their Wilson intervals."""

    group: str
    count: int
    selection_rate: float
    true_positive_rate: float
    false_positive_rate: float
    judged: bool
    selection_rate_ci: tuple[float, float]
    true_positive_rate_ci: tuple[float, float]
    false_positive_rate_ci: tuple[float, float]
    positives: int = 0
    """Rows with a positive label (the true positive rate's denominator); 0 without labels."""
    negatives: int = 0
    """Rows with a negative label (the false positive rate's denominator); 0 without labels."""


@dataclass(frozen=True)
class FairnessResult:
    """Fairness of one sensitive feature (or one intersection) over one window."""

    sensitive: str
    groups: list[GroupStats]
    metrics: dict[str, float]
    judged_groups: int
    status: Literal["ok", "insufficient_data"]
    significant: dict[str, bool]
    labelled: bool = True
    """False when no labels were given: the rate-of-error metrics are then nan."""
    dropped: int = 0
    """Rows left out for a missing prediction or label."""


@dataclass(frozen=True, eq=False)
class FairnessCounts:
    """Confusion counts per group: mergeable across chunks, and what a SQL ``GROUP BY`` pushes down.

    ``counts`` has one row per group (in the order of ``groups``, which is sorted) and four columns
    ``tn, fp, fn, tp``. Without labels (``labelled=False``) every row is counted as if its label were
    negative: column 0 holds the predicted negatives, column 1 the predicted positives and columns 2 and
    3 stay 0, so ``counts.sum(axis=1)`` is always the group size and ``counts[:, 1] + counts[:, 3]``
    always the number selected.
    """

    features: tuple[str, ...]
    groups: tuple[str, ...]
    counts: IntArray
    labelled: bool = True
    dropped: int = 0

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape != (len(self.groups), 4):
            raise MetricInputError(f"fairness counts must have shape ({len(self.groups)}, 4), got {counts.shape}")
        if (counts < 0).any():
            raise MetricInputError("fairness counts must not be negative")
        if len(set(self.groups)) != len(self.groups):
            raise MetricInputError("fairness counts name a group twice")
        if not self.labelled and counts[:, 2:].any():
            raise MetricInputError("unlabelled fairness counts must have zero fn and tp columns")
        if not self.features:
            raise MetricInputError("fairness counts need at least one sensitive feature")
        # A group with no rows (say a zero row pushed down from SQL) has no rates; fairlearn never sees one.
        order = sorted((i for i in range(len(self.groups)) if counts[i].sum() > 0), key=self.groups.__getitem__)
        # Frozen, so normalising (int64, sorted groups) has to go through object.__setattr__.
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "groups", tuple(self.groups[i] for i in order))
        object.__setattr__(self, "counts", counts[order].reshape(len(order), 4))

    @property
    def sensitive(self) -> str:
        """The name of the sensitive feature, or of the intersection (``"sex+age_band"``)."""
        return GROUP_SEPARATOR.join(self.features)

    def merge(self, other: FairnessCounts) -> FairnessCounts:
        """Counts of both chunks together; groups seen in only one chunk keep their counts."""
        if other.features != self.features:
            raise MetricInputError(f"cannot merge fairness counts of {other.sensitive!r} into {self.sensitive!r}")
        if other.labelled != self.labelled:
            raise MetricInputError("cannot merge labelled and unlabelled fairness counts")
        merged: dict[str, IntArray] = {g: self.counts[i].copy() for i, g in enumerate(self.groups)}
        for i, g in enumerate(other.groups):
            if g in merged:
                merged[g] = merged[g] + other.counts[i]
            else:
                merged[g] = other.counts[i].copy()
        groups = tuple(sorted(merged))
        table = np.array([merged[g] for g in groups], dtype=np.int64).reshape(len(groups), 4)
        return FairnessCounts(
            features=self.features,
            groups=groups,
            counts=table,
            labelled=self.labelled,
            dropped=self.dropped + other.dropped,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        y_pred: ArrayLike,
        y_true: ArrayLike | None = None,
        sensitive: pd.DataFrame | pd.Series,
        pos_label: object = 1,
        threshold: float | None = None,
    ) -> FairnessCounts:
        """Count one chunk. ``y_pred`` is binarised with :func:`binarise`, ``y_true`` against ``pos_label``.

        Rows are matched by position, not by index. See the module docstring for missing values.
        """
        frame = sensitive.to_frame() if isinstance(sensitive, pd.Series) else sensitive
        if frame.shape[1] == 0:
            raise MetricInputError("fairness needs at least one sensitive feature")
        pred = _as_series(y_pred, "y_pred")
        n = len(pred)
        if len(frame) != n:
            raise MetricInputError(f"sensitive features have {len(frame)} rows but y_pred has {n}")
        keep = pred.notna().to_numpy()
        truth: pd.Series | None = None
        if y_true is not None:
            truth = _as_series(y_true, "y_true")
            if len(truth) != n:
                raise MetricInputError(f"y_true has {len(truth)} rows but y_pred has {n}")
            keep &= truth.notna().to_numpy()
        dropped = int(n - np.count_nonzero(keep))
        if dropped:
            pred = pred[keep]
            frame = frame[keep]
            truth = truth[keep] if truth is not None else None

        predicted = binarise(pred, pos_label=pos_label, threshold=threshold)
        cell = predicted.astype(np.int64)
        if truth is not None:
            cell += 2 * matches_label(truth, pos_label).astype(np.int64)

        features = tuple(str(c) for c in frame.columns)
        codes, names = zip(*(_group_codes(frame.iloc[:, j]) for j in range(frame.shape[1])), strict=True)
        group_index, slots, decode = _combine_codes(list(codes), [len(x) for x in names])
        table = np.bincount(group_index * 4 + cell, minlength=slots * 4).reshape(slots, 4)
        observed = np.flatnonzero(table.sum(axis=1) > 0)
        groups = tuple(
            GROUP_SEPARATOR.join(names[j][k] for j, k in enumerate(key)) for key in decode(observed).tolist()
        )
        return cls(
            features=features,
            groups=groups,
            counts=table[observed].astype(np.int64),
            labelled=truth is not None,
            dropped=dropped,
        )


def binarise(values: pd.Series, *, pos_label: object = 1, threshold: float | None = None) -> BoolArray:
    """Predictions as booleans (True = the positive outcome).

    * With a ``threshold``: ``values >= threshold`` (values must be numeric).
    * Without: float values in [0, 1] are scores, cut at 0.5, unless every value is 0 or 1 and
      ``pos_label`` is one of them (then they are class labels stored as floats). Any other values are
      class labels: ``values == pos_label``. Floats outside [0, 1] that are not whole numbers need a
      threshold.

    Labels compare by value with one allowance for text round-trips (a command line, a CSV file): a
    text ``pos_label`` such as ``"1"`` matches numeric labels by its number, and a numeric
    ``pos_label`` matches text labels by its text. Missing values are never positive.
    """
    series = _as_series(values, "values")
    if threshold is not None:
        scores = _numeric_values(series, "a threshold")
        with np.errstate(invalid="ignore"):
            return np.asarray(scores >= float(threshold), dtype=np.bool_)
    if pd.api.types.is_float_dtype(series.dtype):
        scores = _floats(series)
        present = scores[~np.isnan(scores)]
        if present.size and not np.all((present == 0.0) | (present == 1.0)):
            if np.all((present >= 0.0) & (present <= 1.0)):
                return np.asarray(scores >= 0.5, dtype=np.bool_)
            if not np.all(np.isfinite(present) & (present == np.round(present))):
                raise MetricInputError("predictions are scores outside [0, 1]: give a threshold to binarise them")
        elif present.size and not _label_present(present, pos_label):
            return np.asarray(scores >= 0.5, dtype=np.bool_)
    return matches_label(series, pos_label)


def matches_label(series: pd.Series, pos_label: object) -> BoolArray:
    """``series == pos_label`` elementwise; missing values never match.

    A text ``pos_label`` such as ``"1"`` matches numeric labels by its number, and a numeric
    ``pos_label`` matches text labels by its text, because labels often make a text round-trip (a
    command line, a CSV file) that the other side did not.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Compare the (few) categories once, then look the answer up by code.
        per_category = matches_label(pd.Series(series.cat.categories), pos_label)
        codes = series.cat.codes.to_numpy()
        return np.asarray((codes >= 0) & per_category[np.maximum(codes, 0)], dtype=np.bool_)
    values = series
    dtype = values.dtype
    # Any: pandas compares with any scalar, which its stubs cannot express for `object`.
    label: Any = pos_label
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if isinstance(pos_label, str) and numeric:
        try:
            label = float(pos_label)
        except ValueError as exc:
            raise MetricInputError(f"pos_label {pos_label!r} cannot match numeric labels of dtype {dtype}") from exc
    elif isinstance(pos_label, str) and pd.api.types.is_bool_dtype(dtype):
        words = {"true": True, "1": True, "false": False, "0": False}
        if pos_label.strip().lower() not in words:
            raise MetricInputError(f"pos_label {pos_label!r} cannot match boolean labels")
        label = words[pos_label.strip().lower()]
    elif (
        isinstance(pos_label, int | float | np.integer | np.floating)
        and not isinstance(pos_label, bool)
        and _holds_text(values)
    ):
        label = str(pos_label)
    result = values.eq(label)
    return np.asarray(result.fillna(False).to_numpy(dtype=np.bool_), dtype=np.bool_)


def fairness(
    *,
    y_pred: pd.Series,
    sensitive: pd.DataFrame,
    y_true: pd.Series | None = None,
    pos_label: object = 1,
    threshold: float | None = None,
    min_group_size: int = 30,
    ci_level: float = 0.95,
) -> FairnessResult:
    """Fairness of ``y_pred`` across the groups of ``sensitive`` (several columns = one intersection).

    Missing sensitive values form their own group, ``"(missing)"``. Gaps cover judged groups only
    (``count >= min_group_size``). See the module docstring for the definitions and the significance
    rule.
    """
    counts = FairnessCounts.from_arrays(
        y_pred=y_pred, y_true=y_true, sensitive=sensitive, pos_label=pos_label, threshold=threshold
    )
    return fairness_from_counts(counts, min_group_size=min_group_size, ci_level=ci_level)


def fairness_from_counts(counts: FairnessCounts, *, min_group_size: int = 30, ci_level: float = 0.95) -> FairnessResult:
    """The fairness result of a confusion-count table (see :class:`FairnessCounts`)."""
    if min_group_size < 0:
        raise MetricInputError(f"min_group_size must be >= 0, got {min_group_size}")
    if not 0.0 < ci_level < 1.0:
        raise MetricInputError(f"ci_level must be between 0 and 1, got {ci_level}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - ci_level) / 2.0)

    table = counts.counts
    tn, fp, fn, tp = (table[:, j] for j in range(4))
    size = table.sum(axis=1)
    selected = fp + tp
    positives = fn + tp
    negatives = tn + fp
    selection = _rate(selected, size)
    if counts.labelled:
        tpr = _rate(tp, positives)
        fpr = _rate(fp, negatives)
    else:
        tpr = np.full(len(size), np.nan)
        fpr = np.full(len(size), np.nan)
    judged = size >= min_group_size

    sel_ci = _wilson(selected, size, z)
    tpr_ci = _wilson(tp, positives, z)
    fpr_ci = _wilson(fp, negatives, z)
    no_ci = (math.nan, math.nan)
    groups = [
        GroupStats(
            group=name,
            count=int(size[i]),
            selection_rate=float(selection[i]),
            true_positive_rate=float(tpr[i]),
            false_positive_rate=float(fpr[i]),
            judged=bool(judged[i]),
            selection_rate_ci=(float(sel_ci[0][i]), float(sel_ci[1][i])),
            true_positive_rate_ci=(float(tpr_ci[0][i]), float(tpr_ci[1][i])) if counts.labelled else no_ci,
            false_positive_rate_ci=(float(fpr_ci[0][i]), float(fpr_ci[1][i])) if counts.labelled else no_ci,
            positives=int(positives[i]) if counts.labelled else 0,
            negatives=int(negatives[i]) if counts.labelled else 0,
        )
        for i, name in enumerate(counts.groups)
    ]

    judged_groups = int(np.count_nonzero(judged))
    metrics = dict.fromkeys(METRIC_NAMES, math.nan)
    significant = dict.fromkeys(METRIC_NAMES, False)
    if judged_groups >= 2:
        alpha = 1.0 - ci_level
        sel_j = selection[judged]
        metrics["demographic_parity_difference"] = float(sel_j.max() - sel_j.min())
        metrics["demographic_parity_ratio"] = _ratio(float(sel_j.min()), float(sel_j.max()))
        dp_p = _pair_p_values(selected[judged], size[judged])
        significant["demographic_parity_difference"] = _bonferroni_rejects([dp_p], alpha)
        significant["demographic_parity_ratio"] = significant["demographic_parity_difference"]
        if counts.labelled:
            tpr_diff = float(tpr[judged].max() - tpr[judged].min())
            fpr_diff = float(fpr[judged].max() - fpr[judged].min())
            metrics["equal_opportunity_difference"] = tpr_diff
            # fairlearn takes Python's max over (tpr, fpr); both are finite here.
            metrics["equalized_odds_difference"] = max(tpr_diff, fpr_diff)
            tpr_p = _pair_p_values(tp[judged], positives[judged])
            fpr_p = _pair_p_values(fp[judged], negatives[judged])
            significant["equal_opportunity_difference"] = _bonferroni_rejects([tpr_p], alpha)
            significant["equalized_odds_difference"] = _bonferroni_rejects([tpr_p, fpr_p], alpha)

    return FairnessResult(
        sensitive=counts.sensitive,
        groups=groups,
        metrics=metrics,
        judged_groups=judged_groups,
        status="ok" if judged_groups >= 2 else "insufficient_data",
        significant=significant,
        labelled=counts.labelled,
        dropped=counts.dropped,
    )


def wilson_interval(successes: int, trials: int, *, ci_level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; ``(0.0, 1.0)`` when there are no trials."""
    z = NormalDist().inv_cdf(1.0 - (1.0 - ci_level) / 2.0)
    low, high = _wilson(np.array([successes]), np.array([trials]), z)
    return float(low[0]), float(high[0])


# --- internals -------------------------------------------------------------------------------------


def _as_series(values: ArrayLike, what: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    array: npt.NDArray[Any] = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{what} must be one-dimensional, got shape {array.shape}")
    return pd.Series(array)


def _numeric_values(series: pd.Series, why: str) -> FloatArray:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return _floats(series)
    raise MetricInputError(f"predictions of dtype {dtype} are not numeric scores, so {why} cannot apply")


def _label_present(present: FloatArray, pos_label: object) -> bool:
    if not isinstance(pos_label, str | int | float | np.number):
        return False
    try:
        label = float(pos_label)
    except (TypeError, ValueError):
        return False
    return bool(np.any(present == label))


def _holds_text(values: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        return True
    if not pd.api.types.is_object_dtype(values.dtype):
        return False
    return bool(pd.api.types.infer_dtype(values, skipna=True) == "string")


def _group_codes(column: pd.Series) -> tuple[IntArray, list[str]]:
    """Codes 0..k-1 for one sensitive column, and the group name of each code (sorted by name)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        raw = column.cat.codes.to_numpy().astype(np.int64)
        names = [str(c) for c in column.cat.categories]
    else:
        try:
            raw, uniques = pd.factorize(column, use_na_sentinel=True)
        except TypeError:
            # Unhashable values (lists, dicts) in an object column: group them by their text.
            raw, uniques = pd.factorize(column.map(lambda v: v if _is_missing(v) else str(v)))
        raw = np.asarray(raw, dtype=np.int64)
        names = [str(u) for u in uniques]
    if (raw < 0).any():
        raw = np.where(raw < 0, len(names), raw)
        names.append(MISSING_GROUP)
    if not names:
        return raw, []
    # Sorting the names (and merging values that print the same) fixes the group order once, here.
    sorted_names, remap = np.unique(np.array(names, dtype=object), return_inverse=True)
    return np.asarray(remap, dtype=np.int64)[raw], [str(s) for s in sorted_names]


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _combine_codes(codes: list[IntArray], sizes: list[int]) -> tuple[IntArray, int, _KeyDecoder]:
    """One group index per row, the number of indices, and a decoder from indices to per-feature codes.

    Few combinations get a dense index (one slot per possible combination, decoded arithmetically);
    many get an index over the combinations that occur, found by sorting, so no table is ever sized
    by combinations that cannot occur.
    """
    n = len(codes[0])
    dims = tuple(sizes)
    total = math.prod(sizes)
    if total <= _DENSE_COMBINATIONS:
        index = np.ravel_multi_index(tuple(codes), dims) if n else np.zeros(0, np.int64)

        def dense(slots: IntArray) -> IntArray:
            return np.stack(np.unravel_index(slots, dims), axis=1).astype(np.int64)

        return np.asarray(index, dtype=np.int64), total, dense
    if total < 2**62:
        flat = np.ravel_multi_index(tuple(codes), dims)
        seen, inverse = np.unique(flat, return_inverse=True)

        def sparse(slots: IntArray) -> IntArray:
            return np.stack(np.unravel_index(seen[slots], dims), axis=1).astype(np.int64)

        return np.asarray(inverse, dtype=np.int64).reshape(n), len(seen), sparse
    rows, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)

    def listed(slots: IntArray) -> IntArray:
        return np.asarray(rows[slots], dtype=np.int64)

    return np.asarray(inverse, dtype=np.int64).reshape(n), len(rows), listed


def _rate(numerator: IntArray, denominator: IntArray) -> FloatArray:
    """numerator / denominator, 0.0 where the denominator is 0 (scikit-learn's nan_to_num)."""
    out = np.zeros(len(numerator), dtype=np.float64)
    nonzero = denominator > 0
    out[nonzero] = numerator[nonzero] / denominator[nonzero]
    return out


def _ratio(low: float, high: float) -> float:
    return low / high if high != 0.0 else math.nan


def _wilson(successes: IntArray, trials: IntArray, z: float) -> tuple[FloatArray, FloatArray]:
    k = successes.astype(np.float64)
    n = trials.astype(np.float64)
    low = np.zeros(len(n))
    high = np.ones(len(n))
    ok = n > 0
    p = k[ok] / n[ok]
    z2 = z * z
    denom = 1.0 + z2 / n[ok]
    centre = (p + z2 / (2.0 * n[ok])) / denom
    half = z / denom * np.sqrt(p * (1.0 - p) / n[ok] + z2 / (4.0 * n[ok] ** 2))
    low[ok] = np.clip(centre - half, 0.0, 1.0)
    high[ok] = np.clip(centre + half, 0.0, 1.0)
    # Floating point can leave the bound a hair off the exact 0 or 1 that k = 0 or k = n imply.
    low[ok & (successes == 0)] = 0.0
    high[ok & (successes == trials)] = 1.0
    return low, high


def _pair_p_values(successes: IntArray, trials: IntArray) -> tuple[FloatArray, int]:
    """Two-sided p-values of the pooled two-proportion z-test (continuity-corrected) over group pairs.

    Also returns how many pairs could have been tested: the Bonferroni count, which exceeds the
    number of p-values when only the extremes are tested.
    """
    testable = trials > 0
    k = successes[testable].astype(np.float64)
    n = trials[testable].astype(np.float64)
    g = len(n)
    if g < 2:
        return np.zeros(0), 0
    if g <= _MAX_GROUPS_ALL_PAIRS:
        i, j = np.triu_indices(g, k=1)
    else:
        rate = k / n
        extremes = np.unique([int(np.argmin(rate)), int(np.argmax(rate))])
        i = np.repeat(extremes, g)
        j = np.tile(np.arange(g), len(extremes))
        distinct = i != j
        i, j = i[distinct], j[distinct]
    p1 = k[i] / n[i]
    p2 = k[j] / n[j]
    pooled = (k[i] + k[j]) / (n[i] + n[j])
    inv = 1.0 / n[i] + 1.0 / n[j]
    se = np.sqrt(pooled * (1.0 - pooled) * inv)
    excess = np.abs(p1 - p2) - 0.5 * inv
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = np.where((se > 0) & (excess > 0), excess / se, 0.0)
    p_values = np.asarray(special.erfc(zscore / math.sqrt(2.0)), dtype=np.float64)
    return p_values, g * (g - 1) // 2


def _bonferroni_rejects(families: list[tuple[FloatArray, int]], alpha: float) -> bool:
    """True when the smallest p-value clears alpha over the number of pairs that could be tested."""
    pairs = sum(m for _, m in families)
    smallest = min((float(p.min()) for p, _ in families if p.size), default=1.0)
    return pairs > 0 and smallest <= alpha / pairs


def _floats(series: pd.Series) -> FloatArray:
    """The values as a float64 array, missing values (None, NA, NaN) as nan."""
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
