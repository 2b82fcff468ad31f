"""Two-sample drift tests and distances under evidently's stattest names, computed with numpy/scipy.

Each registered :class:`StatTest` reproduces evidently 0.7's definition of the same name: the same
binning, the same default threshold and the same comparison (``<``, ``<=``, ``>=`` or ``>``). The
inputs are :class:`NumericSample` (sorted finite values) and :class:`CountSample` (value counts),
so a reference can be prepared once and compared with many windows: the sorted reference is merged
with each sorted window in one pass, and categorical tests only ever see counts.

Where the results differ from evidently, and why (everything else agrees within 1e-9 relative):

* ``g_test`` scales the expected counts to the current size, as ``chisquare`` does; evidently passes
  raw reference counts, which scipy rejects unless both sides have the same size (when they do, the
  two agree exactly).
* ``fisher_exact`` accepts sides of different sizes (evidently requires equal lengths, which the test
  itself does not need).
* ``empirical_mmd`` draws its 100 permutations from ``RandomState(0)`` instead of the global numpy
  generator, and compares at most :data:`MMD_MAX_PER_SIDE` values per side (a seeded subsample above
  that), because the kernel matrix is quadratic in the sample size.
* ``TVD`` draws its 1000 permutations from ``RandomState(0)`` without touching global numpy state
  (evidently seeds the global generator with 0, which yields the same stream), and compares the
  distances in integer arithmetic. Evidently's float sums run in a ``set``'s iteration order, so
  a permutation exactly as extreme as the observed table counts or not depending on the
  process's string hash seed; its p-value can be lower than ours by 0.001 per such tie (small
  samples have many: 0.22 to 0.27 across hash seeds for 15 vs 12 values, where ours is 0.271).
* Tests that are undefined on the given values (for example Anderson-Darling on one repeated value)
  return ``nan`` instead of raising; ``nan`` never counts as drift.
* ``mannw``, ``t_test`` and ``es`` on float32 columns compute in float64. Evidently's scipy calls
  compute in float32 in row order, which a prepared (sorted) reference cannot reproduce; the scores
  agree to float32 precision (about 1e-6 relative, more for p-values far below 1e-10).
* ``cramer_von_mises`` returns p = 1 when both sides hold one and the same value (evidently's
  asymptotic formula reports p ~ 0.01 there), and its exact path (at most 20 values per side) uses
  int64 tables where evidently's narrow integer type fails with a casting error.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from config.errors import MetricInputError

ColumnKind = Literal["numerical", "categorical"]
Comparison = Literal["<", "<=", ">", ">="]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: scipy's ``ks_2samp`` computes the exact distribution up to this sample size (method="auto").
KS_EXACT_MAX_N = 10_000
#: Above this many values per side, ``empirical_mmd`` compares a seeded subsample of each side.
MMD_MAX_PER_SIDE = 1000
#: Permutations evidently uses for ``TVD`` and ``empirical_mmd``.
TVD_PERMUTATIONS = 1000
MMD_PERMUTATIONS = 100


class NumericSample:
    """Finite values of one side of a numerical column, sorted ascending (as float64).

    ``dtype`` is the column's own numeric dtype. Evidently hands its tests the column as it is, so
    numpy's Sturges binning widens bins to at least 1 for integer data and bins float32 data in
    float32, and pandas rounds a float32 column's standard deviation to float32; ``dtype`` lets us
    do the same. ``in_order`` keeps the values in row order for small samples (at most
    :data:`MMD_MAX_PER_SIDE`), where ``empirical_mmd`` permutes them exactly as evidently does.
    """

    def __init__(
        self,
        sorted_values: FloatArray,
        *,
        dtype: npt.DTypeLike = np.float64,
        in_order: FloatArray | None = None,
    ) -> None:
        self.values = sorted_values
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self.n = int(sorted_values.size)
        self.in_order = in_order if in_order is not None and in_order.size <= MMD_MAX_PER_SIDE else None

    @classmethod
    def from_values(cls, values: npt.ArrayLike, *, dtype: npt.DTypeLike = np.float64,
                    sort_in_place: bool = False) -> NumericSample:
        """The sample of ``values`` (non-finite ones dropped); ``sort_in_place`` lets it sort an array the
        caller hands over instead of sorting a copy."""
        arr = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(arr)
        owned = sort_in_place
        if not finite.all():
            arr, owned = arr[finite], True
        in_order = arr.copy() if arr.size <= MMD_MAX_PER_SIDE else None
        if owned:
            arr.sort()
            return cls(arr, dtype=dtype, in_order=in_order)
        return cls(np.sort(arr), dtype=dtype, in_order=in_order)

    @cached_property
    def std(self) -> float:
        """``np.std`` of the column as evidently calls it on a pandas Series (population, two-pass)."""
        if not self.n:
            return math.nan
        if self.dtype.kind == "f" and self.dtype.itemsize < 8:
            # pandas rounds the variance to the column's type, then takes the root in that type.
            return float(np.sqrt(self.dtype.type(np.var(self.values))))
        return float(np.std(self.values))

    @cached_property
    def nunique(self) -> int:
        """Distinct values, counted without materialising them."""
        v = self.values
        return int(np.count_nonzero(v[1:] != v[:-1])) + 1 if v.size else 0

    @cached_property
    def unique_counts(self) -> tuple[FloatArray, IntArray]:
        """Distinct values (ascending) and how often each occurs, from the sorted values in O(n)."""
        v = self.values
        if v.size == 0:
            return v, np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
        counts = np.diff(np.append(starts, v.size)).astype(np.int64)
        return v[starts], counts


class CountSample:
    """Value counts of one side of a column (categorical, or a numerical column seen as categories).

    ``codes`` optionally gives, in row order, the position in ``keys`` of every counted value: the
    permutation tests (``TVD``) shuffle the pooled values in row order, as evidently does.
    """

    def __init__(
        self, keys: Sequence[Hashable], counts: npt.ArrayLike, codes: npt.NDArray[np.integer[Any]] | None = None
    ) -> None:
        self.keys: list[Hashable] = list(keys)
        self.counts: IntArray = np.asarray(counts, dtype=np.int64)
        self.n = int(self.counts.sum())
        self.index: dict[Hashable, int] = {k: i for i, k in enumerate(self.keys)}
        self.codes = codes

    @property
    def nunique(self) -> int:
        return len(self.keys)

    def codes_in_row_order(self) -> npt.NDArray[np.integer[Any]]:
        """``codes`` when known, else the values grouped by key (the same multiset, another order)."""
        if self.codes is not None:
            return self.codes
        return np.repeat(np.arange(len(self.keys), dtype=np.int64), self.counts)


Sample = NumericSample | CountSample


def _sort_keys(keys: list[Hashable]) -> list[Hashable]:
    """Sort category keys as evidently does; mixed types (where evidently raises) by type, then text."""
    try:
        return sorted(keys)  # type: ignore[type-var]
    except TypeError:
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


class SamplePair:
    """A reference and a current sample of one column, with the joint views the tests share.

    Everything is computed lazily and at most once, so running several tests on one pair costs
    one merge and one count alignment.
    """

    def __init__(self, reference: Sample, current: Sample, kind: ColumnKind) -> None:
        self.reference = reference
        self.current = current
        self.kind = kind

    # -- counts -------------------------------------------------------------------------------------
    @cached_property
    def aligned_counts(self) -> tuple[list[Hashable], IntArray, IntArray]:
        """Union of observed values (reference order first), with each side's count per value."""
        ref, cur = self.reference, self.current
        if isinstance(ref, NumericSample) and isinstance(cur, NumericSample):
            rk, rc = ref.unique_counts
            ck, cc = cur.unique_counts
            keys = np.union1d(rk, ck)
            ref_counts = np.zeros(keys.size, dtype=np.int64)
            cur_counts = np.zeros(keys.size, dtype=np.int64)
            ref_counts[np.searchsorted(keys, rk)] = rc
            cur_counts[np.searchsorted(keys, ck)] = cc
            return list(keys.tolist()), ref_counts, cur_counts
        rs, cs = as_counts(ref), as_counts(cur)
        keys_list = list(rs.keys)
        keys_list.extend(self._current_extras)
        ref_counts = np.zeros(len(keys_list), dtype=np.int64)
        ref_counts[: len(rs.keys)] = rs.counts
        cur_counts = np.zeros(len(keys_list), dtype=np.int64)
        np.add.at(cur_counts, self.current_to_union, cs.counts)
        return keys_list, ref_counts, cur_counts

    @cached_property
    def _current_extras(self) -> list[Hashable]:
        """Current values the reference never had, in a canonical order (not the order rows came in), so
        the same counts give bit-identical scores however the window was read or summarised."""
        rs, cs = as_counts(self.reference), as_counts(self.current)
        return _sort_keys([k for k in cs.keys if k not in rs.index])

    @cached_property
    def current_to_union(self) -> IntArray:
        """For each current key, its position among the union keys (reference keys first)."""
        rs, cs = as_counts(self.reference), as_counts(self.current)
        extra = {k: len(rs.keys) + i for i, k in enumerate(self._current_extras)}
        positions = [rs.index[key] if key in rs.index else extra[key] for key in cs.keys]
        return np.asarray(positions, dtype=np.int64)

    @cached_property
    def n_unique(self) -> int:
        """Distinct values over reference and current together (evidently's ``concat(...).nunique()``)."""
        return len(self.aligned_counts[0])

    def n_unique_at_most(self, limit: int) -> int:
        """``n_unique`` when it is <= ``limit``, otherwise some number above it (cheap for big columns)."""
        ref, cur = self.reference, self.current
        if isinstance(ref, NumericSample) and isinstance(cur, NumericSample):
            if ref.nunique > limit:
                return ref.nunique
            # The current side may have a million distinct values; count them without a union first.
            if cur.nunique > limit:
                return cur.nunique
        return self.n_unique

    # -- numeric merge --------------------------------------------------------------------------------
    @cached_property
    def merged(self) -> tuple[FloatArray, npt.NDArray[np.signedinteger[Any]]]:
        """Both sorted samples merged: the values, and how many current values are at or before each.

        The number of reference values at or before position k is then ``k + 1 - cur_upto[k]``.
        """
        r, c = _numeric(self.reference).values, _numeric(self.current).values
        total = r.size + c.size
        pos_c = np.searchsorted(r, c, side="right")
        pos_c += np.arange(c.size, dtype=pos_c.dtype)
        is_cur = np.zeros(total, dtype=bool)
        is_cur[pos_c] = True
        merged = np.empty(total, dtype=np.float64)
        merged[pos_c] = c
        merged[~is_cur] = r
        count_type = np.int32 if total < 2**31 else np.int64
        return merged, np.cumsum(is_cur, dtype=count_type)

    def cdf_gap_integral(self, power: int) -> float:
        """Integral of |F_ref - F_cur|^power over the merged support (scipy's ``_cdf_distance``, no root).

        Inside a run of tied values the running counts are not yet the right-continuous CDF, but the
        width there is exactly zero, so those terms vanish as they do in scipy.
        """
        merged, cur_upto = self.merged
        n, m = self.reference.n, self.current.n
        # F_ref - F_cur at position k is (k + 1 - cur_upto[k]) / n - cur_upto[k] / m: the same
        # integer counts and divisions as scipy, so equal samples give exactly zero.
        ref_upto = np.arange(1, merged.size, dtype=np.int64)
        ref_upto -= cur_upto[:-1]
        gap = ref_upto / n
        del ref_upto
        gap -= cur_upto[:-1] / m
        np.abs(gap, out=gap)
        if power == 2:
            np.square(gap, out=gap)
        return float(np.einsum("i,i->", gap, np.diff(merged)))

    def quantile_gap_integral(self) -> float:
        """First Wasserstein distance as the integral of |Q_ref(q) - Q_cur(q)| over q in [0, 1].

        Equal to scipy's CDF-based ``wasserstein_distance`` (in one dimension the two integrals are the
        same area), but the breakpoints i/n and j/m of both quantile functions merge by arithmetic, so no
        value has to be searched for: one sorted window costs a few linear passes.
        """
        r, c = _numeric(self.reference).values, _numeric(self.current).values
        n, m = r.size, c.size
        total = 0.0
        # Blocks of reference breakpoints keep the temporaries small (a few MiB instead of several
        # arrays of n + m) without changing the sum's terms.
        for a in range(0, n, _GAP_BLOCK):
            b = min(a + _GAP_BLOCK, n)
            ja, jb = -(-a * m // n), -(-b * m // n)
            i = np.arange(a, b, dtype=np.int64)
            j = np.arange(ja, jb, dtype=np.int64)
            # In units of 1/(n*m), reference breakpoints are i*m and current ones j*n. Where they coincide
            # the reference one goes first, leaving a zero-length segment.
            breaks = np.empty(i.size + j.size + 1, dtype=np.int64)
            breaks[(i - a) + (-(-i * m // n) - ja)] = i * m
            breaks[(j - ja) + (j * n // m + 1 - a)] = j * n
            breaks[-1] = b * m
            starts = breaks[:-1]
            gap = r[starts // m] - c[starts // n]
            np.abs(gap, out=gap)
            # einsum: a plain SIMD loop; np.dot would go through BLAS, whose threads compete with ours.
            total += float(np.einsum("i,i->", gap, np.diff(breaks).astype(np.float64)))
        return total / (n * m)

    @cached_property
    def ks_statistic(self) -> float:
        """Two-sided K-S statistic, bit-for-bit as scipy's ``ks_2samp`` computes it."""
        merged, cur_upto = self.merged
        n, m = self.reference.n, self.current.n
        run_end = np.flatnonzero(np.append(merged[1:] != merged[:-1], True))
        cur_at = cur_upto[run_end].astype(np.int64)
        diffs = (run_end + 1 - cur_at) / n - cur_at / m
        max_s = float(diffs.max())
        min_s = float(np.clip(-diffs.min(), 0, 1))
        return min_s if min_s > max_s else max_s


_GAP_BLOCK = 1 << 16


def _numeric(sample: Sample) -> NumericSample:
    if not isinstance(sample, NumericSample):
        raise MetricInputError("this test needs numerical values")
    return sample


def as_counts(sample: Sample) -> CountSample:
    if isinstance(sample, CountSample):
        return sample
    keys, counts = sample.unique_counts
    return CountSample(keys.tolist(), counts)


# --- binning shared by jensenshannon, psi and kl_div (evidently's get_binned_data) -----------------------


def sturges_edges(lo: float, hi: float, size: int, dtype: np.dtype[Any]) -> FloatArray:
    """``np.histogram_bin_edges(data, bins="sturges")`` for data with this min, max, size and dtype.

    numpy computes the edges from exactly these four things, so it is asked on a stand-in array
    holding ``lo`` and ``hi``: the edges come out bit-identical to evidently's (float32 edges for
    float32 data, width at least 1 for integers), whatever numpy version does the arithmetic.
    """
    stand_in = np.full(size, lo, dtype=dtype)
    stand_in[-1] = hi
    edges: FloatArray = np.histogram_bin_edges(stand_in, bins="sturges")
    return edges


def histogram_counts(sorted_values: FloatArray, edges: FloatArray) -> IntArray:
    """``np.histogram(values, edges)[0]`` for already sorted values (last bin closed, as numpy does)."""
    cum = np.concatenate(
        (
            np.searchsorted(sorted_values, edges[:-1], side="left"),
            np.searchsorted(sorted_values, edges[-1:], side="right"),
        )
    )
    return np.diff(cum).astype(np.int64)


def _fill_zeroes(percents: FloatArray) -> FloatArray:
    nonzero_min = float(percents[percents != 0].min())
    fill = nonzero_min / 10**6 if nonzero_min <= 0.0001 else 0.0001
    out = percents.copy()
    out[out == 0] = fill
    return out


def binned_percents(pair: SamplePair, *, fill_zeroes: bool) -> tuple[FloatArray, FloatArray]:
    """Reference and current shares per bin, as evidently's ``get_binned_data`` (``n`` is unused there too).

    Numerical columns with more than 20 distinct reference values use Sturges bins over both sides
    together; everything else uses one bin per observed value.
    """
    ref, cur = pair.reference, pair.current
    if pair.kind == "numerical" and isinstance(ref, NumericSample) and ref.nunique > 20:
        cur_n = _numeric(cur)
        lo = min(ref.values[0], cur_n.values[0])
        hi = max(ref.values[-1], cur_n.values[-1])
        edges = sturges_edges(lo, hi, ref.n + cur_n.n, np.result_type(ref.dtype, cur_n.dtype))
        ref_p = histogram_counts(ref.values, edges.astype(np.float64)) / ref.n
        cur_p = histogram_counts(cur_n.values, edges.astype(np.float64)) / cur_n.n
    else:
        _, rc, cc = pair.aligned_counts
        ref_p = rc / ref.n
        cur_p = cc / cur.n
    if fill_zeroes:
        ref_p, cur_p = _fill_zeroes(ref_p), _fill_zeroes(cur_p)
    return ref_p, cur_p


# --- the tests ------------------------------------------------------------------------------------------


def ks(pair: SamplePair) -> float:
    from scipy import stats

    ref, cur = _numeric(pair.reference), _numeric(pair.current)
    if max(ref.n, cur.n) <= KS_EXACT_MAX_N:
        # Small samples take scipy's exact path; calling it keeps its p-value bit-identical.
        return float(stats.ks_2samp(ref.values, cur.values)[1])
    m, n = sorted([float(ref.n), float(cur.n)], reverse=True)
    en = m * n / (m + n)
    prob = stats.kstwo.sf(pair.ks_statistic, np.round(en))
    return float(np.clip(prob, 0, 1))


def chisquare(pair: SamplePair) -> float:
    from scipy import stats

    _, rc, cc = pair.aligned_counts
    k_norm = pair.current.n / pair.reference.n
    with np.errstate(divide="ignore", invalid="ignore"):
        # A value never seen in the reference has zero expected count: infinite statistic, p = 0.
        return float(stats.chisquare(cc.astype(np.float64), rc * k_norm)[1])


def z(pair: SamplePair) -> float:
    from scipy.special import ndtr

    keys, rc, cc = pair.aligned_counts
    if len(keys) == 1:
        return 1.0
    first = _sort_keys(list(keys))[0]
    i = keys.index(first)
    n1, n2 = pair.reference.n, pair.current.n
    # Evidently codes the smallest value as 0 and everything else as 1, then compares proportions.
    p1 = float(n1 - int(rc[i])) / n1
    p2 = float(n2 - int(cc[i])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_stat = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - ndtr(np.abs(z_stat))))


def wasserstein(pair: SamplePair) -> float:
    ref = _numeric(pair.reference)
    norm = max(ref.std, 0.001)
    return pair.quantile_gap_integral() / norm


def energy_distance(pair: SamplePair) -> float:
    return float(np.sqrt(2) * np.sqrt(pair.cdf_gap_integral(2)))


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (natural log) of two weight vectors, term for term as scipy's
    ``spatial.distance.jensenshannon`` computes it (each side normalised, ``rel_entr`` against the
    midpoint), without scipy: importing ``scipy.spatial`` costs more than the whole computation."""
    pa = np.asarray(p, dtype=np.float64)
    qa = np.asarray(q, dtype=np.float64)
    pa = pa / np.sum(pa)
    qa = qa / np.sum(qa)
    m = (pa + qa) / 2.0
    return float(np.sqrt((np.sum(_rel_entr(pa, m)) + np.sum(_rel_entr(qa, m))) / 2.0))


def _rel_entr(x: FloatArray, y: FloatArray) -> FloatArray:
    """scipy's ``special.rel_entr`` element by element, bit for bit (its branches, the C library's
    ``log``/``log1p`` as scipy's; numpy's vectorised ``log`` may differ in the last bit, which the
    cancellation in a small distance magnifies): NaN for NaN, 0 where x is 0 and y >= 0, inf where
    either is negative or y is 0, else x log(x/y) through ``log1p`` when x/y is within (0.5, 2)."""
    def one(a: float, b: float) -> float:
        if math.isnan(a) or math.isnan(b):
            return math.nan
        if a <= 0 or b <= 0:
            return 0.0 if a == 0 and b >= 0 else math.inf
        ratio = a / b
        if 0.5 < ratio < 2:
            return a * math.log1p((a - b) / b)
        if sys.float_info.min < ratio < math.inf:
            return a * math.log(ratio)
        return a * (math.log(a) - math.log(b))

    return np.array([one(a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)], dtype=np.float64)


def jensenshannon(pair: SamplePair) -> float:
    ref_p, cur_p = binned_percents(pair, fill_zeroes=False)
    return js_distance(ref_p, cur_p)


def psi(pair: SamplePair) -> float:
    ref_p, cur_p = binned_percents(pair, fill_zeroes=True)
    return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))


def kl_div(pair: SamplePair) -> float:
    from scipy import stats

    ref_p, cur_p = binned_percents(pair, fill_zeroes=True)
    return float(stats.entropy(ref_p, cur_p))


def hellinger(pair: SamplePair) -> float:
    keys, rc, cc = pair.aligned_counts
    total = 0.0
    if pair.kind == "categorical" or not isinstance(pair.reference, NumericSample):
        ref_p = rc / pair.reference.n
        cur_p = cc / pair.current.n
        for p1, p2 in zip(ref_p.tolist(), cur_p.tolist(), strict=True):
            total += math.sqrt(p1 * p2)
    else:
        ref, cur = pair.reference, _numeric(pair.current)
        # Evidently bins the distinct values (not the observations): Sturges over the union of values.
        lo, hi = min(ref.values[0], cur.values[0]), max(ref.values[-1], cur.values[-1])
        edges = sturges_edges(lo, hi, len(keys), np.result_type(ref.dtype, cur.dtype))
        as_float = edges.astype(np.float64)
        h1 = _density(histogram_counts(ref.values, as_float), edges)
        h2 = _density(histogram_counts(cur.values, as_float), edges)
        # Kept in the edges' own type, as evidently computes it: float32 edges make a float32 sum.
        bin_width = (edges.max() - edges.min()) / (len(edges) - 1)
        acc: Any = 0.0
        for p1, p2 in zip(h1.tolist(), h2.tolist(), strict=True):
            acc += math.sqrt(p1 * p2) * bin_width
        total = float(acc)
    total = float(np.clip(total, 0, 1))
    return math.sqrt(1 - total)


def _density(counts: IntArray, edges: FloatArray) -> FloatArray:
    widths = np.array(np.diff(edges), float)
    result: FloatArray = counts / widths / counts.sum()
    return result


def anderson(pair: SamplePair) -> float:
    from scipy import stats

    ref, cur = _numeric(pair.reference), _numeric(pair.current)
    try:
        with warnings.catch_warnings():
            # scipy warns that the p-value is capped to [0.001, 0.25]; evidently reports the capped value.
            warnings.simplefilter("ignore")
            return float(stats.anderson_ksamp([ref.values, cur.values])[2])
    except ValueError:
        # One repeated value on both sides: the statistic is undefined.
        return math.nan


def mannw(pair: SamplePair) -> float:
    from scipy import stats

    ref, cur = _numeric(pair.reference), _numeric(pair.current)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.mannwhitneyu(x=ref.values, y=cur.values, alternative="less")[1])


def t_test(pair: SamplePair) -> float:
    from scipy import stats

    ref, cur = _numeric(pair.reference), _numeric(pair.current)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.ttest_ind(ref.values, cur.values)[1])


def epps_singleton(pair: SamplePair) -> float:
    from scipy import stats

    ref, cur = _numeric(pair.reference), _numeric(pair.current)
    if stats.iqr(np.concatenate((ref.values, cur.values))) == 0:
        return math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(stats.epps_singleton_2samp(ref.values, cur.values)[1])
    except ValueError:
        # scipy needs at least five values per side.
        return math.nan


def _cdf_cvm_inf(x: float) -> float:
    """CDF of the limiting Cramer-von Mises distribution (Csorgo and Faraway 1996), as evidently sums it."""
    from scipy.special import gammaln, kv

    total = 0.0
    k = 0
    while True:
        u = np.exp(gammaln(k + 0.5) - gammaln(k + 1)) / (np.pi**1.5 * np.sqrt(x))
        y = 4 * k + 1
        q = y**2 / (16 * x)
        term = float(u * np.sqrt(y) * np.exp(-q) * kv(0.25, q))
        total += term
        if abs(term) < 1e-7:
            return total
        k += 1


def _cvm_exact_pvalue(s: float, m: int, n: int) -> float:
    """Exact two-sample Cramer-von Mises p-value (Xiao, Gordon and Yakovlev 2006), evidently's algorithm."""
    lcm = int(np.lcm(m, n))
    a = lcm // m
    b = lcm // n
    mn = m * n
    zeta = lcm**2 * (m + n) * (6 * s - mn * (4 * mn - 1)) // (6 * mn**2)
    zeta_bound = lcm**2 * (m + n)
    combinations = math.factorial(m + n) / (math.factorial(m) * math.factorial(n))
    # Evidently types the tables with np.min_scalar_type: a float type when the (float) number of
    # combinations dominates, and then its p-values carry that type's rounding, which we keep. When an
    # unsigned integer type comes out, evidently fails with a casting error; int64 holds every entry
    # exactly there (at most 20 values per side).
    dtype: np.dtype[Any] = np.min_scalar_type(max(zeta_bound, combinations))
    if dtype.kind != "f":
        dtype = np.dtype(np.int64)
    gs = [np.array([[0], [1]], dtype=dtype)] + [np.empty((2, 0), dtype=dtype) for _ in range(m)]
    for u in range(n + 1):
        next_gs = []
        tmp = np.empty((2, 0), dtype=dtype)
        for v, g in enumerate(gs):
            vi, i0, i1 = np.intersect1d(tmp[0], g[0], return_indices=True)
            tmp = np.concatenate([np.stack([vi, tmp[1, i0] + g[1, i1]]), np.delete(tmp, i0, 1), np.delete(g, i1, 1)], 1)
            tmp[0] += (a * v - b * u) ** 2
            next_gs.append(tmp)
        gs = next_gs
    value, freq = gs[m]
    return float(np.sum(freq[value >= zeta]) / combinations)


def cramer_von_mises(pair: SamplePair) -> float:
    from scipy.stats import rankdata

    xa, ya = _numeric(pair.reference).values, _numeric(pair.current).values
    nx, ny = xa.size, ya.size
    if xa[0] == xa[-1] == ya[0] == ya[-1]:
        # One value repeated on both sides: evidently's tie-corrected asymptotics give p ~ 0.01 here,
        # a drift alarm on two identical samples.
        return 1.0
    ranks = rankdata(np.concatenate([xa, ya]), method="average")
    u = nx * np.sum((ranks[:nx] - np.arange(1, nx + 1)) ** 2)
    u += ny * np.sum((ranks[nx:] - np.arange(1, ny + 1)) ** 2)
    if max(nx, ny) <= 20:
        return _cvm_exact_pvalue(float(u), nx, ny)
    k, big_n = nx * ny, nx + ny
    t = u / (k * big_n) - (4 * k - 1) / (6 * big_n)
    et = (1 + 1 / big_n) / 6
    vt = (big_n + 1.0) * (4 * k * big_n - 3 * (nx**2 + ny**2) - 2 * k)
    vt = vt / (45 * big_n**2 * 4 * k)
    tn = 1 / 6 + (t - et) / np.sqrt(45 * vt)
    if tn < 0.003:
        return 1.0
    return float(max(0, 1.0 - _cdf_cvm_inf(float(tn))))


def _category_codes(pair: SamplePair) -> tuple[IntArray, int]:
    """Every observation of both sides as a union-key code, reference rows then current rows."""
    _, rc, _ = pair.aligned_counts
    ref, cur = as_counts(pair.reference), as_counts(pair.current)
    cur_codes = pair.current_to_union[cur.codes_in_row_order()]
    pooled = np.concatenate((ref.codes_in_row_order().astype(np.int64), cur_codes))
    return pooled, int(rc.size)


def tvd(pair: SamplePair) -> float:
    _, rc, cc = pair.aligned_counts
    n, m = pair.reference.n, pair.current.n

    # 2 * n * m * TVD as an integer: permutations exactly as extreme as the observed table count as
    # hits. Evidently compares floats summed in a set's iteration order, so its exact ties fall
    # either way depending on the process's string hash seed.
    def scaled(ref_counts: IntArray, cur_counts: IntArray) -> int:
        return int(np.abs(ref_counts * m - cur_counts * n).sum())

    observed = scaled(rc, cc)
    pooled, n_keys = _category_codes(pair)
    total = rc + cc
    rng = np.random.RandomState(0)  # evidently's seed(0) stream
    hits = 0
    for _ in range(TVD_PERMUTATIONS):
        # np.random.choice(pool, n, replace=False) takes the first n of a permutation of the pool.
        drawn = pooled[rng.permutation(pooled.size)[:n]]
        ref_counts = np.bincount(drawn, minlength=n_keys).astype(np.int64)
        if observed <= scaled(ref_counts, total - ref_counts):
            hits += 1
    return hits / TVD_PERMUTATIONS


def _mmd_side(sample: NumericSample, seed: int) -> FloatArray:
    if sample.in_order is not None:
        return sample.in_order
    # Above the cap: a seeded subsample of the sorted values, so the result depends only on the data.
    rng = np.random.RandomState(seed)
    return rng.choice(sample.values, MMD_MAX_PER_SIDE, replace=False)


def empirical_mmd(pair: SamplePair) -> float:
    x = _mmd_side(_numeric(pair.reference), 1).reshape(-1, 1)
    y = _mmd_side(_numeric(pair.current), 2).reshape(-1, 1)
    nx, ny = x.shape[0], y.shape[0]

    def sq_dist(a: FloatArray, b: FloatArray) -> FloatArray:
        result: FloatArray = (b**2).T - 2 * np.dot(a, b.T) + a**2
        return result

    dxx = sq_dist(x, x)
    sigma = (0.5 * np.percentile(dxx.ravel(), 50, method="nearest")) ** 0.5
    if sigma == 0:
        sigma = 0.5**0.5
    gamma = 1.0 / (2.0 * float(sigma) ** 2)
    kxy = np.exp(-gamma * sq_dist(x, y))
    kernel = np.block([[np.exp(-gamma * dxx), kxy], [kxy.T, np.exp(-gamma * sq_dist(y, y))]])
    np.fill_diagonal(kernel, 0.0)
    a = 1 / (nx * (nx - 1))
    b = 1 / (ny * (ny - 1))
    observed = a * kernel[:nx, :nx].sum() + b * kernel[nx:, nx:].sum() - 2.0 * kernel[nx:, :nx].mean()

    # Each permutation's statistic is a quadratic form in the indicator of the permuted x-block,
    # so all of them come from one matrix product instead of 100 reindexed copies of the matrix.
    rng = np.random.RandomState(0)
    big_n = nx + ny
    ind = np.zeros((big_n, MMD_PERMUTATIONS))
    for j in range(MMD_PERMUTATIONS):
        ind[rng.permutation(big_n)[:nx], j] = 1.0
    k_ind = kernel @ ind
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    xx = np.einsum("ij,ij->j", ind, k_ind)
    x_all = ind.T @ row_sums
    xy = x_all - xx
    yy = total - 2 * x_all + xx
    permuted = a * xx + b * yy - 2.0 * xy / (nx * ny)
    return float(np.mean(observed <= permuted))


def fisher_exact(pair: SamplePair) -> float:
    from scipy import stats

    keys, rc, cc = pair.aligned_counts
    if len(keys) > 2:
        raise MetricInputError(f"fisher_exact needs a binary column, found {len(keys)} distinct values")
    # With a single observed value the second category is empty; the two-sided p-value does not
    # depend on which value is called "one".
    ref_one, cur_one = int(rc[0]), int(cc[0])
    table = np.array([[cur_one, pair.current.n - cur_one], [ref_one, pair.reference.n - ref_one]])
    return float(stats.fisher_exact(table)[1])


def g_test(pair: SamplePair) -> float:
    from scipy import stats

    _, rc, cc = pair.aligned_counts
    expected = rc * (pair.current.n / pair.reference.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.power_divergence(cc.astype(np.float64), expected, lambda_="log-likelihood")[1])


# --- registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatTest:
    """One drift test or distance under its evidently name, with evidently's default threshold and rule."""

    name: str
    kinds: frozenset[ColumnKind]
    default_threshold: float
    is_p_value: bool
    drift_when: Comparison
    compute: Callable[[SamplePair], float]
    min_rows: int = 1

    def drifted(self, score: float, threshold: float) -> bool:
        """Evidently's verdict for this test; ``nan`` never drifts (every comparison with it is false)."""
        if self.drift_when == "<":
            return bool(score < threshold)
        if self.drift_when == "<=":
            return bool(score <= threshold)
        if self.drift_when == ">=":
            return bool(score >= threshold)
        return bool(score > threshold)


_NUM: frozenset[ColumnKind] = frozenset({"numerical"})
_CAT: frozenset[ColumnKind] = frozenset({"categorical"})
_BOTH: frozenset[ColumnKind] = frozenset({"numerical", "categorical"})

REGISTRY: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("ks", _NUM, 0.05, True, "<=", ks),
        StatTest("chisquare", _CAT, 0.05, True, "<", chisquare),
        StatTest("z", _CAT, 0.05, True, "<", z),
        StatTest("wasserstein", _NUM, 0.1, False, ">=", wasserstein),
        StatTest("jensenshannon", _BOTH, 0.1, False, ">=", jensenshannon),
        StatTest("psi", _BOTH, 0.1, False, ">=", psi),
        StatTest("kl_div", _BOTH, 0.1, False, ">=", kl_div),
        StatTest("hellinger", _BOTH, 0.1, False, ">=", hellinger),
        StatTest("anderson", _NUM, 0.1, True, "<", anderson),
        StatTest("cramer_von_mises", _NUM, 0.1, True, "<=", cramer_von_mises, min_rows=2),
        StatTest("mannw", _NUM, 0.05, True, "<", mannw),
        StatTest("t_test", _NUM, 0.05, True, "<", t_test),
        StatTest("es", _NUM, 0.05, True, "<", epps_singleton),
        StatTest("ed", _NUM, 0.1, False, ">", energy_distance),
        StatTest("empirical_mmd", _NUM, 0.1, True, "<", empirical_mmd, min_rows=2),
        StatTest("TVD", _CAT, 0.1, True, "<", tvd),
        StatTest("fisher_exact", _CAT, 0.1, True, "<", fisher_exact),
        StatTest("g_test", _CAT, 0.1, True, "<", g_test),
    )
}


def get_stattest(name: str, kind: ColumnKind) -> StatTest:
    """The registered test ``name``; ``MetricInputError`` if unknown or not applicable to ``kind``."""
    test = REGISTRY.get(name)
    if test is None:
        raise MetricInputError(f"unknown drift method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    if kind not in test.kinds:
        raise MetricInputError(f"drift method {name!r} does not apply to {kind} columns")
    return test


def default_stattest(pair: SamplePair) -> StatTest:
    """Evidently 0.7's default choice (``_get_default_stattest``) for numerical and categorical columns.

    Reference larger than 1000 values: Wasserstein for numerical columns with more than 5 distinct
    values over both sides, Jensen-Shannon otherwise. Up to 1000: K-S for numerical columns with more
    than 5 distinct values, chi-square for 3+ and the Z-test for at most 2.
    """
    few = pair.n_unique_at_most(5) <= 5
    if pair.reference.n > 1000:
        if pair.kind == "numerical" and not few:
            return REGISTRY["wasserstein"]
        return REGISTRY["jensenshannon"]
    if pair.kind == "numerical" and not few:
        return REGISTRY["ks"]
    return REGISTRY["chisquare"] if pair.n_unique > 2 else REGISTRY["z"]
