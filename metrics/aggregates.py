"""Judge a window from its aggregates instead of its rows: drift and data quality from per-column summaries.

A window summarised where it lives (``GROUP BY`` in the source database, see ``connectors/sources/sql.py``)
arrives as one :class:`ColumnSummary` per column: a histogram on the reference's bin edges (numerical), the
exact value counts when there are few values, the category counts (categorical), and the counts of missing,
infinite and mistyped values. This module turns those into the same :class:`~metrics.drift.ColumnDrift` and
:class:`~metrics.quality.QualityReport` objects the row path produces.

What is exact and what is not, column by column (``auto`` picks the test as evidently 0.7 does):

* categorical columns: every count-based test (chisquare, z, jensenshannon, psi, kl_div, hellinger, TVD,
  g_test, fisher_exact) runs on the category counts through the same code as the row path, so scores and
  verdicts are *equal* to it;
* numerical columns whose values are all counted (the reference has at most :data:`VALUE_COUNT_LIMIT`
  distinct values and the window at most :data:`VALUE_COUNT_CAP`): jensenshannon, psi and kl_div bin one
  value per bin exactly as evidently does, and wasserstein is the exact CDF integral over the counted values:
  equal to the row path;
* other numerical columns: wasserstein from the histogram states (:func:`metrics.sketch.wasserstein_from_states`,
  never above the exact value; the shortfall is documented there, below 1.1e-3 of the normed distance at 1M
  rows). Tests that need every value (``ks``, which ``auto`` picks when the reference has at most 1000 values,
  ``anderson``, ``mannw``, ...) are *not* approximated: :func:`judge_drift` names those columns, and the caller
  reads just those columns' values and judges them on the row path.

Data quality from summaries equals the row path's counts: missing values, infinite values, values outside the
reference range (the histogram's underflow and overflow bins, whose edges are the reference min and max),
unseen categories and missing or new columns. Type changes cannot be seen from aggregates of a typed column;
values of the wrong type are counted where the source can tell (``type_errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from config.errors import MetricInputError
from metrics import stattests
from metrics.drift import ColumnDrift, ColumnKind, DriftSpec, PreparedReference, judge_samples
from metrics.quality import (
    ColumnProfile,
    QualityFinding,
    QualityReport,
    ReferenceProfile,
    category_key,
    missing_finding,
    out_of_range_finding,
    schema_findings,
    unseen_category_findings,
)
from metrics.sketch import CategoryState, HistogramState, reference_edges, wasserstein_from_states
from metrics.stattests import CountSample, NumericSample, Sample

__all__ = [
    "VALUE_COUNT_CAP",
    "VALUE_COUNT_LIMIT",
    "ColumnSummary",
    "NumericReference",
    "StateReference",
    "WindowSummary",
    "judge_column",
    "judge_drift",
    "quality_from_summary",
    "value_edges",
]

#: evidently bins a numerical column one value per bin when its reference has at most this many values.
VALUE_COUNT_LIMIT = 20
#: A window's values of such a column are counted exactly up to this many distinct values.
VALUE_COUNT_CAP = 1000
#: Tests on a numerical column that can be computed from exact value counts alone.
_COUNTED_NUMERIC = frozenset({"jensenshannon", "psi", "kl_div", "wasserstein", "chisquare", "z"})

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ColumnSummary:
    """What the source sends about one column of one window."""

    kind: Literal["numerical", "categorical"]
    missing: int = 0  # NULL (and NaN, which the row path reads as missing)
    non_finite: int = 0  # +-inf in a numerical column
    type_errors: int = 0  # values that are not numbers in a numerical column
    histogram: HistogramState | None = None  # numerical: on the reference's edges, finite values only
    values: CategoryState | None = None  # numerical: every finite value counted, when few; None otherwise
    categories: CategoryState | None = None  # categorical: counts per category
    distinct_at_least: int = 0  # numerical: a lower bound of the window's distinct finite values

    @property
    def usable(self) -> int:
        if self.kind == "numerical":
            return self.histogram.n if self.histogram is not None else 0
        return self.categories.n if self.categories is not None else 0


@dataclass(frozen=True)
class WindowSummary:
    """The summaries of one window: its rows, the columns it has, and a summary per watched column."""

    rows: int
    present: Sequence[str]  # every column the source has (schema findings compare it with the reference)
    columns: Mapping[str, ColumnSummary] = field(default_factory=dict)


@dataclass(frozen=True)
class NumericReference:
    """A numerical reference column as the aggregate path needs it."""

    edges: FloatArray
    histogram: HistogramState
    std: float  # evidently's normaliser for wasserstein, from the exact sample
    values: CategoryState | None  # exact value counts when the reference has few values
    sample: NumericSample


@dataclass(frozen=True)
class StateReference:
    """The reference prepared for aggregates: bin edges, states and exact value counts per column."""

    kinds: Mapping[str, ColumnKind]
    samples: Mapping[str, Sample]
    numeric: Mapping[str, NumericReference]

    @classmethod
    def from_prepared(cls, *prepared: PreparedReference) -> StateReference:
        """Edges and states of every numerical column of the prepared references.

        Numerical columns with few values get one bin per value (edges between them), so a window's exact
        value counts can be read back from its histogram; the others get 100 quantile bins, refined in the
        tails (:func:`metrics.sketch.reference_edges`). The outer edges are the reference min and max.
        """
        kinds: dict[str, ColumnKind] = {}
        samples: dict[str, Sample] = {}
        for p in prepared:
            for c in p.columns:
                kinds[c], samples[c] = p.kinds[c], p.sample(c)
        numeric: dict[str, NumericReference] = {}
        for name, sample in samples.items():
            if kinds[name] != "numerical" or not isinstance(sample, NumericSample) or sample.n == 0:
                continue
            values = None
            edges = None
            if sample.nunique <= VALUE_COUNT_LIMIT:
                keys, counts = sample.unique_counts
                values = CategoryState(dict(zip(keys.tolist(), counts.tolist(), strict=True)))
                edges = value_edges(keys)
            if edges is None:
                edges = reference_edges(sample.values)
            numeric[name] = NumericReference(edges, HistogramState.from_values(edges, sample.values), sample.std,
                                             values, sample)
        return cls(kinds, samples, numeric)

    def edges(self, columns: Sequence[str]) -> dict[str, FloatArray]:
        return {name: self.numeric[name].edges for name in columns if name in self.numeric}


def value_edges(values: FloatArray) -> FloatArray | None:
    """Edges that put each of a few sorted distinct values in a bin of its own, outer edges at min and max.

    None when two values are too close for a float between them (or there is only one value).
    """
    if values.size < 2:
        return None
    mids = values[:-1] + (values[1:] - values[:-1]) / 2
    edges = np.concatenate(([values[0]], mids, [values[-1]]))
    if not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        return None
    # a value exactly on a midpoint would land in the upper bin; the midpoint lies strictly between
    return edges


def _count_sample(state: CategoryState) -> CountSample:
    keys: list[Hashable] = list(state.counts)
    return CountSample(keys, np.array([state.counts[k] for k in keys], dtype=np.int64))


def _counted_wasserstein(ref: CategoryState, cur: CategoryState, std: float) -> float:
    """Evidently's normed Wasserstein distance between two fully counted samples (the CDF integral)."""
    support = np.unique(np.array([*ref.counts, *cur.counts], dtype=np.float64))
    r = np.array([ref.counts.get(v, 0) for v in support.tolist()], dtype=np.float64)
    c = np.array([cur.counts.get(v, 0) for v in support.tolist()], dtype=np.float64)
    gap = np.abs(np.cumsum(r)[:-1] / r.sum() - np.cumsum(c)[:-1] / c.sum())
    return float(np.sum(gap * np.diff(support))) / max(std, 0.001)


def _verdict(column: str, test: stattests.StatTest, score: float, threshold: float | None, ref_n: int,
             cur_n: int) -> ColumnDrift:
    actual = test.default_threshold if threshold is None else float(threshold)
    return ColumnDrift(column=column, kind="numerical", method=test.name, score=score, threshold=actual,
                       drifted=test.drifted(score, actual), is_p_value=test.is_p_value, reference_rows=ref_n,
                       current_rows=cur_n)


def _judge_numeric(column: str, ref: NumericReference, summary: ColumnSummary, method: str,
                   threshold: float | None) -> ColumnDrift | None:
    """The verdict from aggregates, or None when the test needs the column's values."""
    hist = summary.histogram
    ref_n = ref.sample.n
    cur_n = hist.n if hist is not None else 0
    if cur_n == 0:
        return judge_samples(column, "numerical", ref.sample, NumericSample(np.empty(0)), method=method,
                             threshold=threshold)
    named = None if method == "auto" else stattests.get_stattest(method, "numerical")
    if ref.values is not None and summary.values is not None:
        pair = stattests.SamplePair(_count_sample(ref.values), _count_sample(summary.values), "numerical")
        test = named or stattests.default_stattest(pair)
        if test.name not in _COUNTED_NUMERIC or min(ref_n, cur_n) < test.min_rows:
            return None
        if test.name == "wasserstein":
            return _verdict(column, test, _counted_wasserstein(ref.values, summary.values, ref.std), threshold,
                            ref_n, cur_n)
        return _verdict(column, test, float(test.compute(pair)), threshold, ref_n, cur_n)
    if named is None and max(ref.sample.nunique, summary.distinct_at_least) <= 5:
        return None  # perhaps 5 distinct values or fewer over both sides: `auto` would count them
    # More than 5 distinct values over both sides, so `auto` is wasserstein above 1000 reference values
    # and ks below.
    test = named or stattests.REGISTRY["wasserstein" if ref_n > 1000 else "ks"]
    if test.name != "wasserstein" or hist is None:
        return None
    return _verdict(column, test, wasserstein_from_states(ref.histogram, hist, reference_std=ref.std), threshold,
                    ref_n, cur_n)


def judge_drift(reference: StateReference, window: WindowSummary, spec: DriftSpec,
                columns: Sequence[str]) -> tuple[list[ColumnDrift], list[str]]:
    """Verdicts of the columns that aggregates can judge, and the columns whose values are needed.

    Combine both parts with :func:`metrics.drift.summarise` (the dataset share and Benjamini-Hochberg
    cover all columns together).
    """
    judged: list[ColumnDrift] = []
    need_values: list[str] = []
    for column in columns:
        verdict = judge_column(reference, window, column, method=spec.per_column_method.get(column, spec.method),
                               threshold=spec.per_column_threshold.get(column, spec.threshold))
        if verdict is None:
            need_values.append(column)
        else:
            judged.append(verdict)
    return judged, need_values


def judge_column(reference: StateReference, window: WindowSummary, column: str, *, kind: ColumnKind | None = None,
                 method: str = "auto", threshold: float | None = None) -> ColumnDrift | None:
    """One column's verdict from aggregates, or None when its test needs the column's values.

    ``kind`` judges the column as another kind than it was prepared as: a numerical column judged as
    categorical (a class label stored as a number) is judged on its exact value counts when the window's
    histogram holds them.
    """
    prepared_kind = reference.kinds[column]
    kind = kind or prepared_kind
    summary = window.columns.get(column)
    if summary is None:
        raise MetricInputError(f"the window summary has no column {column!r}")
    sample = reference.samples[column]
    if kind == "categorical":
        if prepared_kind == "numerical":
            if summary.values is None and summary.usable:
                return None
            cats = summary.values or CategoryState({})
        else:
            cats = summary.categories or CategoryState({})
        ref_sample = sample if isinstance(sample, CountSample) else _numeric_counts(sample)
        return judge_samples(column, kind, ref_sample, _count_sample(cats), method=method, threshold=threshold)
    ref = reference.numeric.get(column)
    if ref is None:  # no usable reference value: reported as insufficient data, as on the row path
        return judge_samples(column, kind, sample, NumericSample(np.empty(0)), method=method, threshold=threshold)
    return _judge_numeric(column, ref, summary, method, threshold)


def _numeric_counts(sample: Sample) -> CountSample:
    assert isinstance(sample, NumericSample)
    keys, counts = sample.unique_counts
    return CountSample(keys.tolist(), counts)


def quality_from_summary(window: WindowSummary, profile: ReferenceProfile) -> QualityReport:
    """The data-quality findings of a summarised window, counted as :func:`metrics.quality.data_quality` does."""
    rows = window.rows

    def share(count: int) -> float:
        return count / rows if rows else 0.0

    findings = schema_findings(window.present, profile, rows)
    missing_share: dict[str, float] = {}
    present = set(window.present)
    for name, expected in profile.columns.items():
        summary = window.columns.get(name)
        if name not in present or summary is None:
            missing_share[name] = 1.0
            continue
        missing_share[name] = share(summary.missing)
        if summary.missing:
            findings.append(missing_finding(name, summary.missing, expected, share))
        if expected.kind == "numerical":
            findings.extend(_numeric_findings(name, summary, expected, share))
        elif expected.categories_complete and summary.categories is not None:
            by_text: dict[str, int] = {}
            for key, n in summary.categories.counts.items():
                by_text[category_key(key)] = by_text.get(category_key(key), 0) + int(n)
            findings.extend(unseen_category_findings(name, by_text, expected, share))
    return QualityReport(rows=rows, findings=findings, missing_share=missing_share)


def _numeric_findings(name: str, summary: ColumnSummary, expected: ColumnProfile,
                      share: Callable[[int], float]) -> list[QualityFinding]:
    out: list[QualityFinding] = []
    if summary.type_errors:
        out.append(QualityFinding("type_error", name, summary.type_errors, share(summary.type_errors),
                                  f"{summary.type_errors} values are not numbers"))
    if summary.non_finite:
        out.append(QualityFinding("non_finite", name, summary.non_finite, share(summary.non_finite),
                                  f"{summary.non_finite} infinite values"))
    hist = summary.histogram
    if hist is None or expected.min is None or expected.max is None or hist.n == 0:
        return out
    if hist.edges[0] != expected.min or hist.edges[-1] != expected.max:
        raise MetricInputError(f"column {name!r}: the histogram's outer edges are not the reference range")
    # the underflow and overflow bins of edges that span the reference range
    below, above = int(hist.counts[0]), int(hist.counts[-1])
    if below or above:
        out.append(out_of_range_finding(name, below, above, expected, hist.minimum, hist.maximum, share))
    return out
