"""Mergeable per-feature histogram states for drift on streams and on aggregates pushed down to SQL.

A :class:`HistogramState` holds, on bin edges fixed by the reference, the count and the exact sum of
the values in every bin, plus an underflow and an overflow bin and the extreme values seen. A
:class:`CategoryState` holds category counts. States built chunk by chunk and merged are *identical*
to the state of the whole data: counts are integers and sums are kept as exact dyadic rationals
(every float is one), so no rounding depends on how the data was split. A SQL engine can produce the
same state with ``GROUP BY`` on the bin index (``COUNT``, ``SUM``, ``MIN``, ``MAX``) and hand it to
:meth:`HistogramState.from_aggregates`.

Drift from states, and how it relates to the exact path (:mod:`metrics.stattests`):

* **wasserstein** (normed by the reference standard deviation, as evidently does). Inside a bin
  [a, b] the integral of a CDF is known exactly from the count and the sum there:
  ``integral_a^b F = F(a) (b - a) + (count * b - sum) / n``. So the integral of ``F_ref - F_cur`` over
  each bin is exact, and ``|integral (F_ref - F_cur)|`` equals ``integral |F_ref - F_cur|`` unless
  the two CDFs cross inside the bin. So the sketch value never exceeds the exact distance, and the
  shortfall comes only from bins where the CDFs cross. Nothing is interpolated inside a bin, so
  values far out in a tail bin cost nothing (spreading counts evenly inside bins is far off on
  heavy tails; see the tests). Measured with the default edges (100 quantile bins, refined in the tails; see
  ``tests/test_drift_sketch.py``) on normal, lognormal, Pareto (alpha 1.5), Cauchy, bimodal and
  integer-valued data, shifted and unshifted: the normed shortfall stays below 3e-3 from 50k rows
  and below 1.1e-3 at 1M rows. The worst case is Pareto, whose variance is infinite; the
  finite-variance shapes stay below 1e-3. Evidently's default threshold is
  0.1. A worst-case bound is not offered: undrifted CDFs may cross in every bin, and a bound that
  allows for that is larger than the threshold. The reference standard deviation comes from the
  exact sums of the values and of their (rounded) squares; pass the exact one when it is at hand.
* **psi** and **jensenshannon** use evidently's formulas (including its zero filling for PSI) on the
  state's bins. For categorical features the bins are the categories, exactly as evidently does, so
  the values equal the exact path. For numerical features evidently bins each comparison anew
  (Sturges bins over both samples together, or one bin per value when the reference has at most 20
  distinct values); a state keeps reference-fixed bins instead, so the two values are the same
  measure on different bins and are not expected to be equal.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

from config.errors import MetricInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# A float64 is mantissa * 2**(exponent - 53) with an integer mantissa below 2**53. Splitting the
# mantissa at 2**26 keeps every partial sum of a chunk below 2**53, where float addition is exact.
_HALF_BITS = 26
_SCALE_BITS = 53


@dataclass(frozen=True)
class ExactSum:
    """An exact sum of floats, ``numerator * 2**shift``; adding two is exact and order-independent."""

    numerator: int = 0
    shift: int = 0

    @classmethod
    def of_float(cls, value: float) -> ExactSum:
        num, den = float(value).as_integer_ratio()
        return cls(num, -(den.bit_length() - 1)).normalised()

    def normalised(self) -> ExactSum:
        if self.numerator == 0:
            return ExactSum(0, 0)
        trailing = (self.numerator & -self.numerator).bit_length() - 1
        return ExactSum(self.numerator >> trailing, self.shift + trailing)

    def __add__(self, other: ExactSum) -> ExactSum:
        if self.numerator == 0:
            return other
        if other.numerator == 0:
            return self
        low = min(self.shift, other.shift)
        total = (self.numerator << (self.shift - low)) + (other.numerator << (other.shift - low))
        return ExactSum(total, low).normalised()

    def fraction(self) -> Fraction:
        if self.shift >= 0:
            return Fraction(self.numerator << self.shift)
        return Fraction(self.numerator, 1 << -self.shift)

    def __float__(self) -> float:
        try:
            return float(self.fraction())
        except OverflowError:
            return math.copysign(math.inf, self.numerator)


def exact_sums(values: FloatArray, groups: IntArray, n_groups: int) -> list[ExactSum]:
    """Exact sum of ``values`` per group (0 <= group < n_groups), vectorised."""
    sums = [ExactSum()] * n_groups
    if values.size == 0:
        return sums
    mantissa, exponent = np.frexp(values)
    scaled = mantissa * float(2**_SCALE_BITS)  # exact: an integer-valued float
    high = np.floor(scaled / float(2**_HALF_BITS))
    low = scaled - high * float(2**_HALF_BITS)
    e_min = int(exponent.min())
    span = int(exponent.max()) - e_min + 1
    key = groups.astype(np.int64) * span + (exponent - e_min)
    size = n_groups * span
    high_sum = np.bincount(key, weights=high, minlength=size)
    low_sum = np.bincount(key, weights=low, minlength=size)
    for k in np.flatnonzero((high_sum != 0) | (low_sum != 0)).tolist():
        group, e = divmod(k, span)
        numerator = (int(high_sum[k]) << _HALF_BITS) + int(low_sum[k])
        sums[group] = sums[group] + ExactSum(numerator, e + e_min - _SCALE_BITS).normalised()
    return sums


def _quantile_grid(bins: int) -> FloatArray:
    """``bins`` equal-mass bins, with the outer two on each side split further into the tail.

    The outermost quantile bins of a heavy-tailed reference are very wide, and the sketch's only error
    comes from CDFs crossing inside a bin; probabilities down to 1e-5 in each tail keep those bins short.
    """
    grid = np.linspace(0.0, 1.0, bins + 1)
    tail = np.array([1e-5, 1e-4, 1e-3, 0.25 / bins, 0.5 / bins])
    return np.unique(np.concatenate((grid, tail, 1.0 - tail)))


def exact_square_sum(values: FloatArray) -> ExactSum:
    """Exact sum of the (rounded) squares; values whose square would overflow are squared at 2**-512 scale."""
    big = np.abs(values) > 2.0**500
    total = exact_sums(values[~big] * values[~big], np.zeros(int((~big).sum()), dtype=np.int64), 1)[0]
    if big.any():
        scaled = values[big] * 2.0**-512  # a power of two: exact
        part = exact_sums(scaled * scaled, np.zeros(scaled.size, dtype=np.int64), 1)[0]
        total = total + ExactSum(part.numerator, part.shift + 1024)
    return total


def reference_edges(
    values: npt.ArrayLike, *, bins: int = 100, strategy: Literal["quantile", "uniform"] = "quantile"
) -> FloatArray:
    """Bin edges fixed by the reference over its finite values: quantile bins (refined in the tails) or equal-width."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise MetricInputError("cannot fix bin edges on a reference with no finite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        return np.array([lo - 0.5, hi + 0.5])
    if strategy == "uniform":
        return np.linspace(lo, hi, bins + 1)
    edges = np.unique(np.quantile(arr, _quantile_grid(bins)))
    edges[0], edges[-1] = lo, hi
    return edges


@dataclass(frozen=True)
class HistogramState:
    """Counts and exact sums of one numerical feature on fixed edges, with under/overflow bins.

    ``counts`` and ``sums`` have ``len(edges) + 1`` entries: below ``edges[0]``, the bins
    ``[edges[i], edges[i+1])`` (the last one closed, as in numpy), and above ``edges[-1]``.
    """

    edges: FloatArray
    counts: IntArray
    sums: tuple[ExactSum, ...]
    squares: ExactSum  # exact sum of the (rounded) squares, for the standard deviation
    minimum: float  # nan when empty
    maximum: float

    @classmethod
    def empty(cls, edges: npt.ArrayLike) -> HistogramState:
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0) or not np.all(np.isfinite(e)):
            raise MetricInputError("histogram edges must be at least two finite, strictly increasing values")
        k = e.size + 1
        return cls(e, np.zeros(k, dtype=np.int64), (ExactSum(),) * k, ExactSum(), math.nan, math.nan)

    @classmethod
    def from_values(cls, edges: npt.ArrayLike, values: npt.ArrayLike) -> HistogramState:
        """The state of ``values`` (non-finite values are dropped, as in the exact path)."""
        return cls.empty(edges).update(values)

    @classmethod
    def from_aggregates(
        cls,
        edges: npt.ArrayLike,
        counts: Sequence[int],
        sums: Sequence[float],
        *,
        minimum: float,
        maximum: float,
        sum_of_squares: float = 0.0,
    ) -> HistogramState:
        """A state from per-bin aggregates computed elsewhere (e.g. SQL ``GROUP BY`` on the bin index)."""
        base = cls.empty(edges)
        if len(counts) != base.counts.size or len(sums) != base.counts.size:
            raise MetricInputError(f"expected {base.counts.size} counts and sums (bins plus under/overflow)")
        return cls(
            base.edges,
            np.asarray(counts, dtype=np.int64),
            tuple(ExactSum.of_float(s) for s in sums),
            ExactSum.of_float(sum_of_squares),
            float(minimum),
            float(maximum),
        )

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def bin_index(self, values: FloatArray) -> IntArray:
        """Which of the ``len(edges) + 1`` slots each value falls in."""
        idx = np.searchsorted(self.edges, values, side="right").astype(np.int64, copy=False)
        idx[values == self.edges[-1]] = self.edges.size - 1  # the last regular bin is closed
        return idx

    def update(self, values: npt.ArrayLike) -> HistogramState:
        """This state with ``values`` added."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return self
        idx = self.bin_index(arr)
        chunk = HistogramState(
            self.edges,
            np.bincount(idx, minlength=self.counts.size).astype(np.int64),
            tuple(exact_sums(arr, idx, self.counts.size)),
            exact_square_sum(arr),
            float(arr.min()),
            float(arr.max()),
        )
        return self.merge(chunk)

    def merge(self, other: HistogramState) -> HistogramState:
        """The state of both inputs together; exact, commutative and associative."""
        if self.edges.shape != other.edges.shape or not np.array_equal(self.edges, other.edges):
            raise MetricInputError("cannot merge histogram states with different bin edges")
        return HistogramState(
            self.edges,
            self.counts + other.counts,
            tuple(a + b for a, b in zip(self.sums, other.sums, strict=True)),
            self.squares + other.squares,
            float(np.fmin(self.minimum, other.minimum)),
            float(np.fmax(self.maximum, other.maximum)),
        )

    def std(self) -> float:
        """Population standard deviation from the exact sums."""
        n = self.n
        if n == 0:
            return math.nan
        total = sum((s.fraction() for s in self.sums), Fraction(0))
        mean = total / n
        var = self.squares.fraction() / n - mean * mean
        try:
            return math.sqrt(max(float(var), 0.0))
        except OverflowError:
            return math.inf

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HistogramState):
            return NotImplemented
        return (
            np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
            and self.sums == other.sums
            and self.squares == other.squares
            and _same_float(self.minimum, other.minimum)
            and _same_float(self.maximum, other.maximum)
        )

    __hash__ = None  # type: ignore[assignment]


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@dataclass(frozen=True)
class CategoryState:
    """Counts per category of one categorical feature; merging adds counts."""

    counts: Mapping[Hashable, int]

    @classmethod
    def from_values(cls, values: Sequence[Hashable] | npt.ArrayLike) -> CategoryState:
        import pandas as pd

        series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
        vc = series.value_counts(dropna=True, sort=False)
        return cls({k: int(v) for k, v in vc.items() if v > 0 and not _is_inf(k)})

    def merge(self, other: CategoryState) -> CategoryState:
        merged = dict(self.counts)
        for key, count in other.counts.items():
            merged[key] = merged.get(key, 0) + count
        return CategoryState(merged)

    @property
    def n(self) -> int:
        return sum(self.counts.values())


def _is_inf(key: Hashable) -> bool:
    return isinstance(key, float | np.floating) and math.isinf(key)


# --- drift from states -------------------------------------------------------------------------------


def _shares(
    reference: HistogramState | CategoryState, current: HistogramState | CategoryState
) -> tuple[FloatArray, FloatArray]:
    if isinstance(reference, HistogramState) and isinstance(current, HistogramState):
        if not np.array_equal(reference.edges, current.edges):
            raise MetricInputError("reference and current states have different bin edges")
        rc, cc = reference.counts, current.counts
    elif isinstance(reference, CategoryState) and isinstance(current, CategoryState):
        keys = list(reference.counts) + [k for k in current.counts if k not in reference.counts]
        rc = np.array([reference.counts.get(k, 0) for k in keys], dtype=np.int64)
        cc = np.array([current.counts.get(k, 0) for k in keys], dtype=np.int64)
    else:
        raise MetricInputError("reference and current states must be of the same kind")
    if rc.sum() == 0 or cc.sum() == 0:
        raise MetricInputError("a state with no values cannot be compared")
    # Bins empty on both sides carry no information; evidently's per-value bins never contain them.
    keep = (rc + cc) > 0
    return rc[keep] / rc.sum(), cc[keep] / cc.sum()


def _fill_zeroes(percents: FloatArray) -> FloatArray:
    nonzero_min = float(percents[percents != 0].min())
    out = percents.copy()
    out[out == 0] = nonzero_min / 10**6 if nonzero_min <= 0.0001 else 0.0001
    return out


def psi_from_states(reference: HistogramState | CategoryState, current: HistogramState | CategoryState) -> float:
    """Evidently's PSI (with its zero filling) on the states' bins."""
    ref_p, cur_p = _shares(reference, current)
    ref_p, cur_p = _fill_zeroes(ref_p), _fill_zeroes(cur_p)
    return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))


def jensenshannon_from_states(
    reference: HistogramState | CategoryState, current: HistogramState | CategoryState
) -> float:
    """Evidently's Jensen-Shannon distance (natural log) on the states' bins."""
    from metrics.stattests import js_distance

    ref_p, cur_p = _shares(reference, current)
    return js_distance(ref_p, cur_p)


def wasserstein_from_states(
    reference: HistogramState, current: HistogramState, *, reference_std: float | None = None
) -> float:
    """Evidently's normed Wasserstein distance from two states; never above the exact value.

    ``reference_std`` overrides the standard deviation taken from the reference state (pass the exact
    one when it is at hand).
    """
    if not np.array_equal(reference.edges, current.edges):
        raise MetricInputError("reference and current states have different bin edges")
    n, m = reference.n, current.n
    if n == 0 or m == 0:
        raise MetricInputError("a state with no values cannot be compared")
    edges = reference.edges
    lo = min(float(np.fmin(reference.minimum, current.minimum)), float(edges[0]))
    hi = max(float(np.fmax(reference.maximum, current.maximum)), float(edges[-1]))
    lower = np.concatenate(([lo], edges))
    upper = np.concatenate((edges, [hi]))
    widths = upper - lower
    r_before = np.concatenate(([0.0], np.cumsum(reference.counts)[:-1] / n))
    c_before = np.concatenate(([0.0], np.cumsum(current.counts)[:-1] / m))
    r_sums = np.array([float(s) for s in reference.sums])
    c_sums = np.array([float(s) for s in current.sums])
    # Exact integral of each CDF over each bin, from the count and the sum inside it.
    r_int = r_before * widths + (reference.counts * upper - r_sums) / n
    c_int = c_before * widths + (current.counts * upper - c_sums) / m
    value = float(np.sum(np.abs(r_int - c_int)))
    std = reference.std() if reference_std is None else reference_std
    return value / max(std, 0.001)
