"""Turn aggregates computed in a database into the agent's mergeable states, exactly as in process.

A SQL source pushes three aggregations down (see ``connectors/sources/sql.py``): the rows per bin of a
numerical column on the reference's edges, the rows per value of a categorical column, and the rows per
distinct (sensitive values, prediction, label) combination. This module is the pure half: it rebuilds
:class:`~metrics.sketch.HistogramState`, :class:`~metrics.sketch.CategoryState` and
:class:`~metrics.fairness.FairnessCounts` from those aggregate rows.

Why the fairness counts are equal to the in-process ones: :func:`metrics.fairness.binarise` and
:func:`metrics.fairness.matches_label` decide per value, and where they look at the whole column they look
only at which values are present (all in [0, 1]? pos_label among them?). The distinct combinations hold
exactly the values present in the window, so every row is classified as it would be in process; the
group names come from the same ``str(value)`` rule. Histogram counts are exact when the database compares
the same float64 values with the same edges; the per-bin sums come back rounded by the database's own
floating-point summation, which is the documented bin error (relative 1e-12 of the bin's sum, far below
any drift threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from metrics.fairness import GROUP_SEPARATOR, FairnessCounts, _group_codes, binarise, matches_label
from metrics.sketch import CategoryState, HistogramState


def histogram_from_bins(edges: npt.ArrayLike, rows: Sequence[Sequence[Any]]) -> HistogramState:
    """``rows`` are ``(slot, count, sum, min, max, sum_of_squares)`` with ``slot`` in ``0..len(edges)``."""
    e = np.asarray(edges, dtype=np.float64)
    k = e.size + 1
    counts = [0] * k
    sums = [0.0] * k
    lo, hi, squares = math.nan, math.nan, 0.0
    for slot, count, total, low, high, sq in rows:
        i = int(slot)
        counts[i] += int(count)
        sums[i] += float(total or 0.0)
        squares += float(sq or 0.0)
        if low is not None:
            lo = float(np.fmin(lo, float(low)))
        if high is not None:
            hi = float(np.fmax(hi, float(high)))
    return HistogramState.from_aggregates(e, counts, sums, minimum=lo, maximum=hi, sum_of_squares=squares)


def categories_from_counts(rows: Sequence[Sequence[Any]]) -> CategoryState:
    """``rows`` are ``(value, count)``; NULL values are left out, as ``CategoryState.from_values`` does."""
    counts: dict[Any, int] = {}
    for value, count in rows:
        if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
            continue
        counts[value] = counts.get(value, 0) + int(count)
    return CategoryState({k: v for k, v in counts.items() if v > 0})


def fairness_from_combinations(
    combos: pd.DataFrame,
    *,
    features: Sequence[str],
    prediction: str,
    label: str | None,
    count: str,
    pos_label: object = 1,
    threshold: float | None = None,
    thresholded: bool = False,
) -> FairnessCounts:
    """Confusion counts from one row per distinct (features, prediction[, label]) with its row count.

    ``thresholded``: the database already turned the prediction into 1/0 (``pred >= threshold``), so
    1 is the positive prediction whatever ``pos_label`` says.
    """
    n = combos[count].to_numpy(dtype=np.int64)
    pred = combos[prediction]
    keep = pred.notna().to_numpy()
    truth = combos[label] if label is not None else None
    if truth is not None:
        keep &= truth.notna().to_numpy()
    dropped = int(n[~keep].sum())
    kept = combos.loc[keep].reset_index(drop=True)
    weights = n[keep]
    if thresholded:
        predicted = kept[prediction].to_numpy(dtype=np.float64) == 1.0
    else:
        predicted = binarise(kept[prediction], pos_label=pos_label, threshold=threshold)
    cell = predicted.astype(np.int64)
    if label is not None:
        cell += 2 * matches_label(kept[label], pos_label).astype(np.int64)
    names_per_feature = [_group_codes(kept[f]) for f in features]
    table: dict[str, npt.NDArray[np.int64]] = {}
    for row in range(len(kept)):
        name = GROUP_SEPARATOR.join(names[codes[row]] for codes, names in names_per_feature)
        slot = table.setdefault(name, np.zeros(4, dtype=np.int64))
        slot[cell[row]] += weights[row]
    groups = tuple(sorted(table))
    counts = np.array([table[g] for g in groups], dtype=np.int64).reshape(len(groups), 4)
    return FairnessCounts(features=tuple(features), groups=groups, counts=counts, labelled=label is not None,
                          dropped=dropped)
