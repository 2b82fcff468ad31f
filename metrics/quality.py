"""Data quality of a window against what was remembered of the reference: values and schema.

A :class:`ReferenceProfile` keeps, per reference column, its kind, dtype, missing share, finite min and
max (numerical) and its set of categories (categorical). :func:`data_quality` compares a window with it
and reports findings, each with a count and a share of the window's rows:

* ``missing``: missing values (None, NaN, NA, NaT) in an expected column;
* ``type_error``: values of a numerical column that are not numbers and cannot be read as numbers;
* ``non_finite``: infinite values in a numerical column;
* ``out_of_range``: finite values below the reference min or above the reference max;
* ``unseen_category``: values of a categorical column that the reference never had;
* ``missing_column`` / ``new_column``: a reference column absent from the window, or the other way round;
* ``dtype_change``: the column's type family changed (numeric, boolean, datetime, timedelta, text).
  Integer to float is not a change: pandas makes that switch by itself when a value goes missing.
* ``bad_record``: records the source could not turn into rows at all and left out (an inference
  event whose request and response disagree, an unreadable object); added by the caller from the
  source's report, counted in records, its share taken of rows plus bad records.

Categories compare by text, with whole floats written as integers (``1.0`` is ``"1"``) so that a
column which picked up a missing value (and so turned float) still matches. The reference keeps at
most :data:`MAX_CATEGORIES` categories, the most frequent; a column with more is marked incomplete and
gets no ``unseen_category`` findings, because a value missing from a truncated set proves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd

from config.errors import MetricInputError

MAX_CATEGORIES = 10_000
"""Most categories remembered per reference column."""

ColumnKind = Literal["numerical", "categorical"]
FindingKind = Literal[
    "missing",
    "type_error",
    "out_of_range",
    "unseen_category",
    "missing_column",
    "new_column",
    "dtype_change",
    "non_finite",
    "bad_record",
]
FINDING_KINDS: tuple[str, ...] = get_args(FindingKind)

UNKNOWN_FAMILY = "unknown"
"""Type family of a reference column that held no values at all."""

# Details quote a few offending values; long ones are cut so a single huge string cannot bloat a ticket.
_EXAMPLES = 3
_EXAMPLE_CHARS = 40

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class QualityFinding:
    """One problem found in one column: how many values (or rows, for schema findings), and what."""

    kind: FindingKind
    column: str
    count: int
    share: float
    detail: str


@dataclass(frozen=True)
class ColumnProfile:
    """What is remembered of one reference column."""

    kind: ColumnKind
    dtype: str
    """The reference dtype's name, e.g. ``"float64"``."""
    family: str
    """numeric, boolean, datetime, timedelta or text (unknown when all missing): what ``dtype_change`` compares."""
    missing_share: float
    min: float | None = None
    """Smallest finite value (numerical columns); None when the reference had none."""
    max: float | None = None
    categories: frozenset[str] = field(default_factory=frozenset)
    """Category texts (categorical columns), at most :data:`MAX_CATEGORIES` of them."""
    categories_complete: bool = True
    """False when the reference had more categories than were kept."""


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-column profiles of a reference data set, in the reference's column order."""

    columns: dict[str, ColumnProfile]

    @classmethod
    def from_frame(cls, reference: pd.DataFrame, *, kinds: Mapping[str, ColumnKind]) -> ReferenceProfile:
        """Profile every column of ``reference``.

        ``kinds`` gives the kind of the columns it names; the others are numerical when their dtype is
        numeric (booleans excepted) and categorical otherwise. Column names are taken as text.
        """
        columns = _columns_by_name(reference)
        unknown = sorted(set(kinds) - set(columns))
        if unknown:
            raise MetricInputError(f"kinds name columns the reference does not have: {', '.join(unknown)}")
        profiles: dict[str, ColumnProfile] = {}
        for name, series in columns.items():
            kind = kinds.get(name) or _infer_kind(series)
            if kind not in ("numerical", "categorical"):
                raise MetricInputError(f"column {name!r}: unknown kind {kind!r}")
            profiles[name] = _profile(series, kind)
        return cls(columns=profiles)


@dataclass(frozen=True)
class QualityReport:
    """The findings of one window, and the missing share of every expected column."""

    rows: int
    findings: list[QualityFinding]
    missing_share: dict[str, float]

    def count(self, kind: str) -> int:
        """How many findings of this kind there are (one per affected column)."""
        _check_kind(kind)
        return sum(1 for f in self.findings if f.kind == kind)

    def values(self, kind: str) -> int:
        """How many values the findings of this kind cover, over all columns."""
        _check_kind(kind)
        return sum(f.count for f in self.findings if f.kind == kind)


def data_quality(current: pd.DataFrame, profile: ReferenceProfile) -> QualityReport:
    """Findings of ``current`` against ``profile``: schema first, then each expected column in order."""
    rows = len(current)
    columns = _columns_by_name(current)
    findings: list[QualityFinding] = []
    missing_share: dict[str, float] = {}

    def share(count: int) -> float:
        return count / rows if rows else 0.0

    findings.extend(schema_findings(list(columns), profile, rows))

    for name, expected in profile.columns.items():
        if name not in columns:
            missing_share[name] = 1.0
            continue
        series = columns[name]
        missing = _missing_mask(series)
        n_missing = int(np.count_nonzero(missing))
        missing_share[name] = share(n_missing)
        if n_missing:
            findings.append(missing_finding(name, n_missing, expected, share))
        # An all-missing side has no values to have a type; the missing finding already tells.
        if n_missing < rows and expected.family != UNKNOWN_FAMILY:
            family = _family(series)
            if family != expected.family:
                findings.append(
                    QualityFinding(
                        "dtype_change",
                        name,
                        rows - n_missing,
                        share(rows - n_missing),
                        f"dtype {expected.dtype} ({expected.family}) became {series.dtype} ({family})",
                    )
                )
        if expected.kind == "numerical":
            findings.extend(_numerical_findings(name, series, missing, expected, share))
        else:
            findings.extend(_categorical_findings(name, series, expected, share))

    return QualityReport(rows=rows, findings=findings, missing_share=missing_share)


# --- internals -------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in FINDING_KINDS:
        raise MetricInputError(f"unknown finding kind {kind!r}; known: {', '.join(FINDING_KINDS)}")


def _columns_by_name(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Columns keyed by their name as text; of duplicated names the first column counts."""
    columns: dict[str, pd.Series] = {}
    for position, label in enumerate(frame.columns):
        name = str(label)
        if name not in columns:
            columns[name] = frame.iloc[:, position]
    return columns


def _infer_kind(series: pd.Series) -> ColumnKind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    return "numerical" if pd.api.types.is_numeric_dtype(dtype) else "categorical"


def _family(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if pd.api.types.is_object_dtype(dtype) and not isinstance(series.dtype, pd.CategoricalDtype):
        # Object columns are whatever their values are; a column of Python floats is numeric.
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "numeric"
        if inferred == "boolean":
            return "boolean"
        if inferred in ("datetime", "datetime64", "date"):
            return "datetime"
        if inferred in ("timedelta", "timedelta64"):
            return "timedelta"
    return "text"


def _missing_mask(series: pd.Series) -> BoolArray:
    return np.asarray(series.isna().to_numpy(dtype=np.bool_), dtype=np.bool_)


def _as_numbers(series: pd.Series) -> FloatArray:
    """Values as floats; nan for missing values and for values that are not numbers."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return _floats(series)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        # A date is not a number; counting every one as a type error says so plainly.
        return np.full(len(series), np.nan)
    try:
        numbers = pd.to_numeric(series, errors="coerce")
    except (TypeError, ValueError):
        # Values pandas cannot even try (lists, dicts, objects): read them one by one.
        numbers = pd.Series([_one_number(v) for v in series], dtype=np.float64)
    return _floats(numbers)


def _one_number(value: object) -> float:
    if isinstance(value, bool | int | float | np.number | str):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            return math.nan
    return math.nan


def _profile(series: pd.Series, kind: ColumnKind) -> ColumnProfile:
    rows = len(series)
    n_missing = int(np.count_nonzero(_missing_mask(series)))
    common: dict[str, Any] = {
        "kind": kind,
        "dtype": str(series.dtype),
        "family": _family(series) if n_missing < rows else UNKNOWN_FAMILY,
        "missing_share": n_missing / rows if rows else 0.0,
    }
    if kind == "numerical":
        numbers = _as_numbers(series)
        finite = numbers[np.isfinite(numbers)]
        if finite.size:
            common["min"] = float(finite.min())
            common["max"] = float(finite.max())
        return ColumnProfile(**common)
    keys = _category_counts(series)
    kept = keys.nlargest(MAX_CATEGORIES, keep="first") if len(keys) > MAX_CATEGORIES else keys
    return ColumnProfile(
        **common,
        categories=frozenset(str(k) for k in kept.index),
        categories_complete=len(keys) <= MAX_CATEGORIES,
    )


def category_key(value: object) -> str:
    """The text a category value is compared by (whole floats as integers, so ``1.0`` is ``\"1\"``)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _category_counts(series: pd.Series) -> pd.Series:
    """Non-missing values counted by category text; mapping distinct values only keeps it fast."""
    present = series[series.notna()]
    try:
        counts = present.value_counts(dropna=True, sort=False)
    except TypeError:
        # Unhashable values (lists, dicts): count those by their text, the others as they are.
        counts = present.map(_hashable).value_counts(dropna=True, sort=False)
    if counts.empty:
        return pd.Series([], dtype=np.int64)
    keys = [category_key(v) for v in counts.index]
    return pd.Series(counts.to_numpy(dtype=np.int64), index=keys).groupby(level=0, sort=False).sum()


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value


def _examples(values: list[str]) -> str:
    clipped = [v if len(v) <= _EXAMPLE_CHARS else v[: _EXAMPLE_CHARS - 1] + "…" for v in values[:_EXAMPLES]]
    more = ", …" if len(values) > _EXAMPLES else ""
    return ", ".join(repr(v) for v in clipped) + more


def _numerical_findings(
    name: str,
    series: pd.Series,
    missing: BoolArray,
    expected: ColumnProfile,
    share: Callable[[int], float],
) -> list[QualityFinding]:
    findings: list[QualityFinding] = []
    numbers = _as_numbers(series)
    not_numbers = np.isnan(numbers) & ~missing
    n_type = int(np.count_nonzero(not_numbers))
    if n_type:
        bad = series[not_numbers]
        samples = [str(v) for v in bad.iloc[: _EXAMPLES + 1]]
        findings.append(
            QualityFinding(
                "type_error",
                name,
                n_type,
                share(n_type),
                f"{n_type} values are not numbers, e.g. {_examples(samples)}",
            )
        )
    infinite = np.isinf(numbers)
    n_inf = int(np.count_nonzero(infinite))
    if n_inf:
        findings.append(QualityFinding("non_finite", name, n_inf, share(n_inf), f"{n_inf} infinite values"))
    if expected.min is not None and expected.max is not None:
        finite = numbers[np.isfinite(numbers)]
        below = int(np.count_nonzero(finite < expected.min))
        above = int(np.count_nonzero(finite > expected.max))
        if below or above:
            findings.append(out_of_range_finding(name, below, above, expected, float(finite.min()),
                                                 float(finite.max()), share))
    return findings


def out_of_range_finding(name: str, below: int, above: int, expected: ColumnProfile, lowest: float, highest: float,
                         share: Callable[[int], float]) -> QualityFinding:
    """The ``out_of_range`` finding of a column with ``below`` values under the reference min and ``above`` over."""
    parts = []
    if below:
        parts.append(f"{below} values below the reference min {expected.min!r} (lowest {lowest!r})")
    if above:
        parts.append(f"{above} values above the reference max {expected.max!r} (highest {highest!r})")
    return QualityFinding("out_of_range", name, below + above, share(below + above), "; ".join(parts))


def _categorical_findings(
    name: str, series: pd.Series, expected: ColumnProfile, share: Callable[[int], float]
) -> list[QualityFinding]:
    if not expected.categories_complete:
        return []
    counts = _category_counts(series)
    if counts.empty:
        return []
    return unseen_category_findings(name, dict(zip(counts.index, counts.tolist(), strict=True)), expected, share)


def unseen_category_findings(name: str, counts_by_text: Mapping[str, int], expected: ColumnProfile,
                             share: Callable[[int], float]) -> list[QualityFinding]:
    """The ``unseen_category`` finding (or none) of a column whose values were counted by category text."""
    unseen = sorted(((k, int(n)) for k, n in counts_by_text.items() if n and k not in expected.categories),
                    key=lambda kv: -kv[1])
    if not unseen:
        return []
    n_unseen = sum(n for _, n in unseen)
    detail = (
        f"{n_unseen} values in {len(unseen)} categories the reference never had, "
        f"e.g. {_examples([k for k, _ in unseen[: _EXAMPLES + 1]])}"
    )
    return [QualityFinding("unseen_category", name, n_unseen, share(n_unseen), detail)]


def missing_finding(name: str, n_missing: int, expected: ColumnProfile, share: Callable[[int], float]
                    ) -> QualityFinding:
    """The ``missing`` finding of a column with ``n_missing`` missing values."""
    detail = f"{n_missing} missing values ({share(n_missing):.1%}); reference {expected.missing_share:.1%}"
    return QualityFinding("missing", name, n_missing, share(n_missing), detail)


def schema_findings(present: Sequence[str], profile: ReferenceProfile, rows: int) -> list[QualityFinding]:
    """``missing_column`` and ``new_column`` findings of a window that has the columns ``present``."""
    have = set(present)
    whole = 1.0 if rows else 0.0
    out = [QualityFinding("missing_column", name, rows, whole, "column is missing")
           for name in profile.columns if name not in have]
    out += [QualityFinding("new_column", name, rows, whole, "column is not in the reference")
            for name in present if name not in profile.columns]
    return out


def _floats(series: pd.Series) -> FloatArray:
    """The values as a float64 array, missing values (None, NA, NaN) as nan."""
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
