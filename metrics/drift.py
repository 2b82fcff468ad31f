"""Per-feature and dataset drift between a reference and a current window, agreeing with evidently 0.7.

``auto`` picks the test exactly as evidently 0.7's ``DataDriftPreset`` does (by non-null reference
size, column kind and the number of distinct values over both sides), with evidently's thresholds
and comparisons; any registered test can be named instead (:func:`available_methods`). The scores
are computed by :mod:`metrics.stattests` in numpy/scipy, never by evidently.

For repeated windows against one reference, :class:`PreparedReference` sorts and counts the
reference once; each window then costs one sort and one merge per numerical column and one value
count per categorical column.

Values that are NaN, +-inf or None are dropped per column before testing (evidently does the same).
A column with no usable value on either side is reported as ``insufficient_data`` and is not
judged; that is an outcome, not an error. Configuration mistakes (unknown method, a method that does
not apply to the column's kind, a missing column, non-numeric values in a numerical column) raise
:class:`config.errors.MetricInputError`.

Column kinds, when not given, are inferred like evidently 0.7 infers them without a data definition
(:func:`infer_kind`). Evidently infers from the *current* dataset; :func:`dataset_drift` and
:func:`column_drift` do the same, so they agree with evidently column for column, while
:meth:`PreparedReference.prepare` can only look at the reference and fixes the kinds there.

Free text: evidently 0.7.23 calls a text column (string dtype, or object whose first and last values
are strings) Text when more than half of its non-null values are distinct (:func:`is_text`), and
judges it with a text-content drift model this package does not implement. Comparing such a column
as categories finds "drift" in any two samples of free text (almost every value is new), so under
``auto`` an inferred text column is reported with status ``text_not_supported``: not judged, not
drifted, not counted in the share. Naming a method (for the column or globally), or giving the column
a kind, compares it as categorical.

False-alarm control: with ``DriftSpec.fdr_alpha`` set, the p-value columns of one call are judged
together with the Benjamini-Hochberg procedure at that level. Each such column keeps its raw p-value
as ``score`` and gets the BH critical value as ``threshold`` (k * alpha / m, where k is the number of
rejected hypotheses and m the number of p-values; alpha / m when none is rejected), and drifts when
``score <= threshold``: exactly the columns whose BH-adjusted p-value is at most alpha. Distance
columns are unaffected.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from config.errors import MetricInputError
from metrics import stattests
from metrics.stattests import ColumnKind, CountSample, NumericSample, Sample, SamplePair, StatTest

__all__ = [
    "ColumnDrift",
    "ColumnKind",
    "DatasetDrift",
    "DriftSpec",
    "PreparedReference",
    "available_methods",
    "column_drift",
    "dataset_drift",
    "infer_kind",
    "is_text",
    "judge_samples",
    "summarise",
]

#: evidently's INTEGER_CARDINALITY_LIMIT: integer columns with at most this many values are categorical.
INTEGER_CARDINALITY_LIMIT = 10
_KINDS: tuple[ColumnKind, ...] = ("numerical", "categorical")
#: Below this many cells per window, a thread pool costs more than it saves.
_PARALLEL_MIN_CELLS = 200_000
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict for one column."""

    column: str
    kind: ColumnKind | Literal["text"]  # "text" only for a free-text column left unjudged under auto
    method: str  # evidently stattest name actually used ("auto" only when no test could run)
    score: float  # p-value for tests, distance for distances; nan when not computable
    threshold: float
    drifted: bool
    is_p_value: bool  # True: drift when score is below threshold; False: a distance, drift when above
    reference_rows: int  # non-null values used
    current_rows: int
    # insufficient_data and text_not_supported columns are not judged: never drifted, not in the share
    status: Literal["ok", "insufficient_data", "text_not_supported"] = "ok"


@dataclass(frozen=True)
class DatasetDrift:
    """Per-column verdicts and evidently's dataset rule: drift when the drifted share reaches the limit."""

    columns: list[ColumnDrift]
    drifted_count: int
    share: float  # drifted / judged columns (insufficient columns are not judged)
    dataset_drift: bool  # share >= drift_share, and at least one column judged
    drift_share: float


@dataclass(frozen=True)
class DriftSpec:
    """Which test and threshold to use, globally or per column, and the dataset rule."""

    method: str = "auto"  # "auto" or any registered stattest name
    threshold: float | None = None  # None: the method's evidently default
    per_column_method: Mapping[str, str] = field(default_factory=dict)
    per_column_threshold: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5
    # Benjamini-Hochberg across the p-value columns of one call (see the module docstring).
    fdr_alpha: float | None = None


def available_methods() -> list[str]:
    """Every drift method that can be named, with evidently's names."""
    return sorted(stattests.REGISTRY)


# --- kind inference -------------------------------------------------------------------------------------


def _infer_one(series: pd.Series) -> ColumnKind | None:
    """Evidently's ``infer_column_type`` mapped to our two kinds; None when there is nothing to look at.

    Evidently's Text becomes categorical. Where evidently says Unknown for a dtype it does not know
    (nullable Int64/UInt*/Float64/boolean, unsigned ints), the same rule as its numpy counterpart applies.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or ptypes.is_bool_dtype(dtype):
        return "categorical"
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        raise MetricInputError(f"column {series.name!r} holds dates or durations, not numbers or categories")
    if ptypes.is_float_dtype(dtype):
        return "numerical"
    if ptypes.is_integer_dtype(dtype):
        return "categorical" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "numerical"
    if ptypes.is_string_dtype(dtype) and not ptypes.is_object_dtype(dtype):
        return "categorical"
    # object: evidently looks at the first and last non-null value.
    values = series.dropna()
    if values.empty:
        return None
    first, last = values.iloc[0], values.iloc[-1]
    if isinstance(first, str) and isinstance(last, str):
        return "categorical"
    # Evidently leaves other object columns Unknown (no drift). Plain numbers are treated as numbers;
    # anything mixed is compared as categories, which works for any hashable value.
    if all(_is_real_number(v) for v in values):
        return _infer_one(pd.to_numeric(values))
    return "categorical"


def is_text(series: pd.Series) -> bool:
    """Whether evidently 0.7.23 infers this column as Text (``evidently.core.datasets.infer_column_type``).

    A ``string`` dtype column, or an ``object`` column whose first and last non-null values are strings,
    with more distinct values than half its non-null values. Every other dtype is never text (float and
    int come first in evidently's order; ``category`` is categorical).
    """
    name = series.dtype.name
    if name not in ("string", "str", "object"):
        return False
    if name == "object":
        values = series.dropna()
        if values.empty or not (isinstance(values.iloc[0], str) and isinstance(values.iloc[-1], str)):
            return False
    try:
        distinct = series.nunique()
    except TypeError:  # unhashable values between the first and the last: evidently fails there too
        return False
    return bool(distinct > series.count() * 0.5)


def _text_decides(reference: pd.Series, current: pd.Series | None) -> bool:
    """Text-ness as evidently sees it: from the current side when it holds values, else the reference."""
    side = current if current is not None and current.notna().any() else reference
    return is_text(side)


def _is_real_number(value: object) -> bool:
    numeric = isinstance(value, int | float | np.integer | np.floating)
    return numeric and not isinstance(value, bool | np.bool_)


def infer_kind(reference: pd.Series, current: pd.Series | None = None) -> ColumnKind:
    """The kind evidently 0.7 infers when no data definition is given.

    Evidently infers from the current dataset, so ``current`` decides when given (and has values to
    look at); the reference decides otherwise.
    """
    for series in (current, reference):
        if series is not None:
            kind = _infer_one(series)
            if kind is not None:
                return kind
    return "categorical"


# --- cleaning a column into a sample ---------------------------------------------------------------------


def _finite_numbers(series: pd.Series) -> tuple[npt.NDArray[np.float64], np.dtype[Any]]:
    """The finite values of a numerical column in row order (as float64), and the column's numeric dtype."""
    dtype = series.dtype
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        raise MetricInputError(f"column {series.name!r} holds dates or durations, not numbers")
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        # Evidently cannot bin booleans as numbers; 0/1 is the only sensible reading.
        arr, source = series.to_numpy(dtype=np.float64, na_value=np.nan), np.dtype(np.int64)
    elif ptypes.is_numeric_dtype(dtype):
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        # Nullable extension types (Int64, Float32...) stand for their numpy counterparts.
        source = np.dtype(getattr(dtype, "numpy_dtype", dtype))
    else:
        values = series.dropna()
        if not all(_is_real_number(v) for v in values):
            raise MetricInputError(f"column {series.name!r} is numerical but holds non-numeric values")
        converted = pd.to_numeric(values)
        arr, source = converted.to_numpy(dtype=np.float64), np.dtype(converted.dtype)
    finite = np.isfinite(arr)
    return (arr if finite.all() else arr[finite]), source


def _is_infinite(key: Hashable) -> bool:
    return isinstance(key, float | np.floating) and math.isinf(key)


def _count_sample(series: pd.Series) -> CountSample:
    """Counts of the observed values, and each counted row's value as a code, in row order."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        uniques = list(series.cat.categories)
    else:
        try:
            codes, unique_values = pd.factorize(series, use_na_sentinel=True)
        except TypeError as exc:
            raise MetricInputError(f"column {series.name!r} holds values that cannot be counted: {exc}") from exc
        codes = codes.astype(np.int64)
        uniques = list(unique_values)
    valid = codes >= 0
    infinite = [i for i, k in enumerate(uniques) if _is_infinite(k)]
    if infinite:
        valid &= ~np.isin(codes, infinite)
    codes = codes[valid] if not valid.all() else codes
    counts = np.bincount(codes, minlength=len(uniques))
    # Category dtype lists unobserved categories; evidently only sees observed values.
    observed = np.flatnonzero(counts > 0)
    if observed.size != len(uniques):
        remap = np.full(len(uniques), -1, dtype=np.int64)
        remap[observed] = np.arange(observed.size)
        codes = remap[codes]
    code_type = np.int8 if observed.size <= 127 else np.int32
    return CountSample([uniques[i] for i in observed.tolist()], counts[observed], codes.astype(code_type))


def _sample(series: pd.Series, kind: ColumnKind) -> Sample:
    if kind == "numerical":
        arr, source = _finite_numbers(series)
        # a copy of ours is sorted where it lies; a view of the caller's frame is never touched
        owned = not np.may_share_memory(arr, series.to_numpy(copy=False)) if arr.size else True
        return NumericSample.from_values(arr, dtype=source, sort_in_place=owned)
    return _count_sample(series)


# --- judging one column ----------------------------------------------------------------------------------


def _check_kind(column: str, kind: str) -> ColumnKind:
    for known in _KINDS:
        if kind == known:
            return known
    raise MetricInputError(f"column {column!r}: kind must be 'numerical' or 'categorical', not {kind!r}")


def _resolve_test(method: str, kind: ColumnKind) -> StatTest | None:
    """The named test, validated against the kind; None for ``auto`` (decided once data is seen)."""
    if method == "auto":
        return None
    return stattests.get_stattest(method, kind)


def _judge(
    column: str, kind: ColumnKind, ref: Sample, cur: Sample, method: str, threshold: float | None
) -> ColumnDrift:
    named = _resolve_test(method, kind)
    if ref.n == 0 or cur.n == 0 or (named is not None and min(ref.n, cur.n) < named.min_rows):
        return _insufficient(column, kind, named, threshold, ref.n, cur.n)
    pair = SamplePair(ref, cur, kind)
    test = named if named is not None else stattests.default_stattest(pair)
    if min(ref.n, cur.n) < test.min_rows:
        return _insufficient(column, kind, test, threshold, ref.n, cur.n)
    actual = test.default_threshold if threshold is None else float(threshold)
    score = float(test.compute(pair))
    return ColumnDrift(
        column=column,
        kind=kind,
        method=test.name,
        score=score,
        threshold=actual,
        drifted=test.drifted(score, actual),
        is_p_value=test.is_p_value,
        reference_rows=ref.n,
        current_rows=cur.n,
    )


def judge_samples(
    column: str, kind: ColumnKind, reference: Sample, current: Sample, *, method: str = "auto",
    threshold: float | None = None
) -> ColumnDrift:
    """The verdict of one column from two prepared samples (sorted values or counts), as :func:`column_drift`."""
    return _judge(column, _check_kind(column, kind), reference, current, method, threshold)


def _insufficient(
    column: str, kind: ColumnKind, test: StatTest | None, threshold: float | None, ref_n: int, cur_n: int
) -> ColumnDrift:
    default = test.default_threshold if test is not None else math.nan
    actual = float(threshold) if threshold is not None else default
    return ColumnDrift(
        column=column,
        kind=kind,
        method=test.name if test is not None else "auto",
        score=math.nan,
        threshold=actual,
        drifted=False,
        is_p_value=test.is_p_value if test is not None else False,
        reference_rows=ref_n,
        current_rows=cur_n,
        status="insufficient_data",
    )


def _not_supported(column: str, ref_n: int, cur_n: int) -> ColumnDrift:
    return ColumnDrift(column=column, kind="text", method="auto", score=math.nan, threshold=math.nan, drifted=False,
                       is_p_value=False, reference_rows=ref_n, current_rows=cur_n, status="text_not_supported")


def _apply_fdr(columns: list[ColumnDrift], alpha: float) -> list[ColumnDrift]:
    """Benjamini-Hochberg over the judged p-value columns, as one critical value (see the module doc)."""
    idx = [i for i, c in enumerate(columns) if c.is_p_value and c.status == "ok" and math.isfinite(c.score)]
    if not idx:
        return columns
    m = len(idx)
    pvalues = np.sort(np.array([columns[i].score for i in idx]))
    passing = np.flatnonzero(pvalues <= np.arange(1, m + 1) * alpha / m)
    k = int(passing[-1]) + 1 if passing.size else 0
    cutoff = max(k, 1) * alpha / m
    out = list(columns)
    for i in idx:
        c = out[i]
        out[i] = replace(c, threshold=cutoff, drifted=bool(k > 0 and c.score <= cutoff))
    return out


def summarise(columns: list[ColumnDrift], spec: DriftSpec) -> DatasetDrift:
    """Evidently's dataset verdict over column verdicts (after Benjamini-Hochberg when ``spec`` asks for it).

    For verdicts that were judged in parts (some columns from aggregates, some from rows): the share and
    the false-alarm control always cover all of them together.
    """
    if spec.fdr_alpha is not None:
        columns = _apply_fdr(columns, spec.fdr_alpha)
    judged = [c for c in columns if c.status == "ok"]
    drifted = sum(1 for c in judged if c.drifted)
    share = drifted / len(judged) if judged else 0.0
    return DatasetDrift(
        columns=columns,
        drifted_count=drifted,
        share=share,
        dataset_drift=bool(judged) and share >= spec.drift_share,
        drift_share=spec.drift_share,
    )


# --- public API ------------------------------------------------------------------------------------------


def column_drift(
    reference: pd.Series,
    current: pd.Series,
    *,
    column: str | None = None,
    kind: ColumnKind | None = None,
    method: str = "auto",
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of one column between ``reference`` and ``current``."""
    name = column if column is not None else str(reference.name if reference.name is not None else "value")
    resolved = _check_kind(name, kind) if kind is not None else infer_kind(reference, current)
    _resolve_test(method, resolved)
    if kind is None and method == "auto" and _text_decides(reference, current):
        return _not_supported(name, int(reference.count()), int(current.count()))
    return _judge(name, resolved, _sample(reference, resolved), _sample(current, resolved), method, threshold)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MetricInputError(f"{side} data has no column {missing[0]!r}")


def dataset_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str],
    kinds: Mapping[str, ColumnKind] | None = None,
    spec: DriftSpec = DriftSpec(),
) -> DatasetDrift:
    """Drift of every column in ``columns`` and evidently's dataset verdict.

    Columns without a kind in ``kinds`` are inferred as evidently does; inferred free text is not
    judged under ``auto`` (see the module docstring).
    """
    _require_columns(reference, columns, "reference")
    _require_columns(current, columns, "current")
    given = dict(kinds or {})
    resolved = {c: _check_kind(c, given[c]) if c in given else infer_kind(reference[c], current[c]) for c in columns}
    # inferred free text is left unjudged under auto (see the module docstring)
    text = frozenset(c for c in columns if c not in given and _text_decides(reference[c], current[c]))
    plan = []
    for column in columns:
        method = spec.per_column_method.get(column, spec.method)
        _resolve_test(method, resolved[column])  # fail on configuration before any work
        plan.append((column, method, spec.per_column_threshold.get(column, spec.threshold)))

    def run(step: tuple[str, str, float | None]) -> ColumnDrift:
        # one column at a time, both sides prepared and dropped again: a one-off comparison keeps no
        # prepared reference (PreparedReference is for comparing many windows with one reference)
        column, method, threshold = step
        kind = resolved[column]
        if method == "auto" and column in text:
            return _not_supported(column, int(reference[column].count()), int(current[column].count()))
        return _judge(column, kind, _sample(reference[column], kind), _sample(current[column], kind), method,
                      threshold)

    cells = (len(reference) + len(current)) * len(plan)
    return summarise(_map_columns(run, plan, cells), spec)


def _map_columns(run: Callable[[_T], _R], plan: Sequence[_T], cells: int) -> list[_R]:
    """``run`` over the columns' plan, on a thread pool when the work is big enough to gain from one.

    Sorting, merging and counting release the GIL, so columns overlap on the available cores.
    """
    workers = min(len(plan), os.cpu_count() or 1)
    if workers > 1 and cells >= _PARALLEL_MIN_CELLS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, plan))
    return [run(step) for step in plan]


def _canonical_key(key: Hashable) -> str:
    """A text form of a category value that is the same in every process (unlike ``hash`` of a str)."""
    if isinstance(key, bool | np.bool_):
        return f"b:{bool(key)}"
    if isinstance(key, int | np.integer):
        return f"i:{int(key)}"
    if isinstance(key, float | np.floating):
        as_float = float(key)
        return f"i:{int(as_float)}" if as_float.is_integer() else f"f:{as_float.hex()}"
    if isinstance(key, str):
        return f"s:{key}"
    return f"r:{type(key).__name__}:{key!r}"


def _prepare_column(column: str, kind: ColumnKind, series: pd.Series) -> tuple[Sample, bytes]:
    """One reference column's sample and the digest of its usable values in row order.

    For a numerical column one copy serves both: it is hashed in row order (with -0.0 folded into 0.0,
    which compares equal and so must hash equal), then sorted where it lies.
    """
    h = hashlib.sha256(json.dumps([column, kind]).encode())
    if kind == "numerical":
        arr, source = _finite_numbers(series)
        values = arr + 0.0
        h.update(f"numerical:{source.str}:".encode() + np.int64(values.size).tobytes())
        h.update(values.astype("<f8", copy=False).tobytes())
        numeric = NumericSample.from_values(values, dtype=source, sort_in_place=True)
        # computed now, once, rather than lazily inside concurrent compare() calls
        _ = numeric.std, numeric.nunique
        sample: Sample = numeric
    else:
        sample = _count_sample(series)
        h.update(json.dumps([_canonical_key(k) for k in sample.keys]).encode())
        h.update(sample.codes_in_row_order().astype("<i4").tobytes())
    return sample, h.digest()


class PreparedReference:
    """Reference prepared once per snapshot (sorted numeric arrays, category counts, unique sets).

    Reused for every window compared against that snapshot.
    """

    def __init__(
        self,
        columns: list[str],
        kinds: dict[str, ColumnKind],
        rows: int,
        samples: dict[str, Sample],
        digest: str,
        text_columns: frozenset[str] = frozenset(),
    ) -> None:
        self.columns = columns
        self.kinds = kinds
        self.rows = rows
        self._samples = samples
        #: free-text columns (prepared as categorical): judged only when a method is named for them
        self.text_columns = text_columns
        #: sha256 over the columns, their kinds and their usable values in row order (see prepare).
        self.digest = digest

    @classmethod
    def prepare(
        cls,
        reference: pd.DataFrame,
        *,
        columns: Sequence[str],
        kinds: Mapping[str, ColumnKind] | None = None,
        text_columns: frozenset[str] = frozenset(),
    ) -> PreparedReference:
        """Sort and count ``reference`` once; kinds not given are inferred from the reference alone.

        ``text_columns`` (categorical columns holding free text) are left unjudged under ``auto``.
        """
        _require_columns(reference, columns, "reference")
        given = dict(kinds or {})
        resolved = {c: _check_kind(c, given[c]) if c in given else infer_kind(reference[c]) for c in columns}
        def prepare_one(c: str) -> tuple[Sample, bytes]:
            return _prepare_column(c, resolved[c], reference[c])

        # as in compare(): sorting, counting and hashing release the GIL, so columns overlap on the cores
        prepared = _map_columns(prepare_one, list(columns), len(reference) * len(columns))
        samples = {c: p[0] for c, p in zip(columns, prepared, strict=True)}
        h = hashlib.sha256(b"aims-agent drift reference v2\n")
        for _, column_digest in prepared:
            h.update(column_digest)
        if text_columns:
            h.update(json.dumps(["text", sorted(text_columns)]).encode())
        return cls(list(columns), resolved, len(reference), samples, h.hexdigest(), frozenset(text_columns))

    def sample(self, column: str) -> Sample:
        """The prepared reference sample of ``column`` (sorted values or counts)."""
        return self._samples[column]

    def compare(
        self,
        current: pd.DataFrame,
        spec: DriftSpec = DriftSpec(),
        *,
        columns: Sequence[str] | None = None,
    ) -> DatasetDrift:
        """Drift of ``current`` against this reference, column by column, and the dataset verdict.

        ``columns`` limits the comparison to some of the prepared columns (all of them by default).
        """
        chosen = list(self.columns) if columns is None else list(columns)
        unknown = [c for c in chosen if c not in self._samples]
        if unknown:
            raise MetricInputError(f"column {unknown[0]!r} is not in the prepared reference")
        _require_columns(current, chosen, "current")
        plan = []
        for column in chosen:
            kind = self.kinds[column]
            method = spec.per_column_method.get(column, spec.method)
            _resolve_test(method, kind)  # fail on configuration before any work
            threshold = spec.per_column_threshold.get(column, spec.threshold)
            plan.append((column, kind, method, threshold))

        def run(step: tuple[str, ColumnKind, str, float | None]) -> ColumnDrift:
            column, kind, method, threshold = step
            if method == "auto" and column in self.text_columns:
                return _not_supported(column, self._samples[column].n, int(current[column].count()))
            return _judge(column, kind, self._samples[column], _sample(current[column], kind), method, threshold)

        return summarise(_map_columns(run, plan, len(current) * len(plan)), spec)
