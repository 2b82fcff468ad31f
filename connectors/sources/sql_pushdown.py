"""SQL pushdown: a window's histograms, category counts and fairness counts computed by the database.

Only aggregates travel: per numerical column the rows per slot of the reference's bin edges (with the count,
sum, minimum, maximum and sum of squares of each slot), per categorical column the rows per value, and per
fairness feature set the rows per distinct (sensitive values, prediction, label). The pure half, turning the
rows into states, is :mod:`metrics.pushdown`; judging the states is :mod:`metrics.aggregates`.

The slot of a value is numpy's ``searchsorted(edges, value, side="right")`` with the top edge closed, plus
special slots the agent reads as data-quality counts: NULL (missing), NaN (missing, as pandas reads it),
+inf and -inf (non-finite) and, on SQLite whose columns take any type, values that are not numbers.

Statements, on every dialect (the same SQLAlchemy expressions, compiled by each):

* numerical columns two per scan: ``GROUP BY (slot of a, slot of b)`` with the count and, per column, the
  sum, minimum, maximum and sum of squares of each slot; each column's slots are the other's summed out.
  On **PostgreSQL** the slot is one ``width_bucket`` over an array of thresholds that put NaN, the
  infinities and the closed top edge in slots of their own (no ``CASE`` per value); elsewhere (SQLite,
  MariaDB/MySQL, DuckDB, Trino, Spark SQL, BigQuery) a portable ``CASE`` over bound edges.
* categorical columns and fairness feature sets (with the prediction, cut at its threshold, and the
  label) counted together in as few ``GROUP BY`` as keep the combinations under :data:`JOINT_GROUPS`,
  by the reference's cardinalities; the row count comes with them.

The statements run side by side on ``pushdown_concurrency`` connections.

Categorical values are grouped by their bytes on MariaDB/MySQL (``BINARY``), whose default collations would
merge ``Red``, ``red`` and ``red `` into one group, where the row path counts three.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import (
    Float,
    Integer,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy import column as sa_column
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import quoted_name

from config.errors import SourceQueryError
from metrics.aggregates import ColumnSummary
from metrics.fairness import GROUP_SEPARATOR, FairnessCounts
from metrics.pushdown import categories_from_counts, fairness_from_combinations, histogram_from_bins
from metrics.sketch import CategoryState

FloatArray = npt.NDArray[np.float64]

#: Special slots, beside the regular 0..len(edges).
MISSING, NAN, POS_INF, NEG_INF, NOT_A_NUMBER = -1, -2, -3, -4, -5
#: At most this many combinations are counted by one GROUP BY over several categorical columns.
JOINT_GROUPS = 200_000
_DBL_MAX = sys.float_info.max


@dataclass(frozen=True)
class PushdownPlan:
    """What one window's checks need from the database."""

    numerical: Mapping[str, FloatArray] = field(default_factory=dict)  # column -> the reference's bin edges
    categorical: Sequence[str] = ()
    fairness: Sequence[Sequence[str]] = ()  # sensitive feature sets (several features: an intersection)
    prediction: str | None = None
    label: str | None = None
    pos_label: object = 1
    threshold: float | None = None  # cut the prediction in SQL: pred >= threshold is positive
    # distinct values of categorical columns in the reference: lets several be counted in one GROUP BY
    cardinality: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowAggregates:
    """The aggregates of one window."""

    rows: int
    columns: dict[str, ColumnSummary]
    fairness: dict[str, FairnessCounts]  # keyed by the features joined with "+"
    # with a label: the same groups over every row, labelled or not (the counts before labels arrive)
    fairness_unlabelled: dict[str, FairnessCounts] = field(default_factory=dict)


class Relation(Protocol):
    """What pushdown needs of the SQL source it runs for."""

    def backend(self) -> str: ...
    def relation(self) -> Any: ...
    def window_filter(self, start: Any, end: Any, ids: Any = None) -> list[ColumnElement[bool]]: ...
    def execute(self, stmt: Any) -> list[tuple[Any, ...]]: ...
    def need(self, name: str, what: str) -> None: ...

    @property
    def concurrency(self) -> int: ...


def _col(name: str, type_: Any = None) -> ColumnElement[Any]:
    return sa_column(quoted_name(name, quote=True), type_=type_)


def _category_key(x: ColumnElement[Any], backend: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """What to select and what to group by for a categorical value.

    MariaDB/MySQL group byte-wise (``BINARY``), as the row path compares, and select the value itself
    (``MIN`` of one group's identical bytes) so it arrives as text in the column's own character set.
    """
    if backend in ("mysql", "mariadb"):
        return func.min(x), func.binary(x)
    return x, x


# --- numerical columns -----------------------------------------------------------------------------------


def _generic_slot(x: ColumnElement[Any], edges: FloatArray, backend: str) -> ColumnElement[Any]:
    """The slot as a portable ``CASE`` over bound edges (special slots first)."""
    whens: list[tuple[ColumnElement[bool], Any]] = [(x.is_(None), literal(MISSING, Integer()))]
    if backend == "sqlite":
        # SQLite keeps what a loose client wrote: text in a REAL column compares above every number
        whens.append((func.typeof(x).not_in(["integer", "real"]), literal(NOT_A_NUMBER, Integer())))
    if backend in ("postgresql", "duckdb"):
        whens.append((x == literal(float("nan"), Float()), literal(NAN, Integer())))
    elif backend not in ("mysql", "mariadb", "sqlite"):
        whens.append((x != x, literal(NAN, Integer())))  # IEEE engines: NaN is the value unequal to itself
    whens.append((x > literal(_DBL_MAX, Float()), literal(POS_INF, Integer())))
    whens.append((x < literal(-_DBL_MAX, Float()), literal(NEG_INF, Integer())))
    whens += [(x < literal(float(v), Float()), literal(i, Integer())) for i, v in enumerate(edges)]
    whens.append((x == literal(float(edges[-1]), Float()), literal(edges.size - 1, Integer())))
    return case(*whens, else_=literal(edges.size, Integer()))


def _pg_thresholds(edges: FloatArray) -> list[float] | None:
    """``width_bucket`` thresholds whose buckets map one to one onto our slots (see :func:`_pg_slot_map`).

    ``[-DBL_MAX, e0 .. e(k-2), next float above e(k-1), +inf, NaN]``: -inf falls below all of them, the
    top edge stays in the last regular bin, and PostgreSQL sorts NaN above +inf.
    """
    top = float(np.nextafter(edges[-1], np.inf))
    if not math.isfinite(top):
        return None
    return [-_DBL_MAX, *(float(v) for v in edges[:-1]), top, math.inf, math.nan]


def _pg_slot_map(bucket: int | None, k: int) -> int:
    """Our slot for PostgreSQL's bucket over :func:`_pg_thresholds` of ``k`` edges."""
    if bucket is None:
        return MISSING
    if bucket == 0:
        return NEG_INF
    if bucket <= k + 1:
        return bucket - 1
    return POS_INF if bucket == k + 2 else NAN


def _summary_from_slots(edges: FloatArray, rows: Sequence[Sequence[Any]]) -> tuple[ColumnSummary, int]:
    """A numerical column's summary from ``(slot, count, sum, min, max, sum of squares)`` rows, and its rows."""
    regular = [r for r in rows if r[0] >= 0]
    special = {MISSING: 0, NAN: 0, POS_INF: 0, NEG_INF: 0, NOT_A_NUMBER: 0}
    for r in rows:
        if r[0] < 0:
            special[int(r[0])] += int(r[1])
    hist = histogram_from_bins(edges, regular)
    # every finite value is known when each non-empty slot holds a single value (min == max there)
    single = all(r[3] is not None and float(r[3]) == float(r[4]) for r in regular if int(r[1]))
    values = None
    if single:
        counts: dict[Hashable, int] = {}
        for r in regular:
            if int(r[1]):
                counts[float(r[3])] = counts.get(float(r[3]), 0) + int(r[1])
        values = CategoryState(counts)
    distinct = sum(0 if not int(r[1]) else 1 if float(r[3]) == float(r[4]) else 2 for r in regular)
    summary = ColumnSummary(kind="numerical", missing=special[MISSING] + special[NAN],
                            non_finite=special[POS_INF] + special[NEG_INF], type_errors=special[NOT_A_NUMBER],
                            histogram=hist, values=values, distinct_at_least=distinct)
    return summary, sum(int(r[1]) for r in rows)


def _numeric_rows(rel: Relation, names: Sequence[str], edges: Mapping[str, FloatArray],
                  where: list[ColumnElement[bool]]) -> dict[str, tuple[ColumnSummary, int]]:
    """One scan binning one or two columns jointly; each column's slots are the other's summed out.

    Two columns per scan halve the scans (on PostgreSQL the scan is most of a statement's cost) for at most
    ``(bins + 5) ** 2`` groups; more columns per scan were measured slower.
    """
    backend = rel.backend()
    slots: list[ColumnElement[Any]] = []
    aggs: list[ColumnElement[Any]] = [func.count()]
    pg = []
    for n in names:
        x = _col(n, Float())
        slot: ColumnElement[Any]
        thresholds = _pg_thresholds(edges[n]) if backend == "postgresql" else None
        pg.append(thresholds is not None)
        if thresholds is not None:
            from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION

            # one width_bucket per value, no CASE (see _pg_thresholds)
            bound = bindparam(None, thresholds, ARRAY(DOUBLE_PRECISION))
            slot = func.width_bucket(cast(x, DOUBLE_PRECISION()), bound)
            finite = x
        else:
            slot = _generic_slot(x, edges[n], backend)
            finite = case((slot >= 0, x), else_=literal(None, Float()))
        slots.append(slot)
        aggs += [func.sum(finite), func.min(finite), func.max(finite), func.sum(finite * finite)]
    stmt = select(*slots, *aggs).select_from(rel.relation()).where(*where).group_by(*slots)
    rows = rel.execute(stmt)
    width = len(names)
    out: dict[str, tuple[ColumnSummary, int]] = {}
    for i, n in enumerate(names):
        k = edges[n].size
        per: dict[int, list[Any]] = {}
        for r in rows:
            raw = r[i]
            slot_i = _pg_slot_map(None if raw is None else int(raw), k) if pg[i] else (
                MISSING if raw is None else int(raw))
            count = int(r[width])
            total, low, high, sq = r[width + 1 + 4 * i: width + 5 + 4 * i]
            acc = per.setdefault(slot_i, [slot_i, 0, 0.0, None, None, 0.0])
            acc[1] += count
            if slot_i >= 0:  # the sums of NaN and infinities mean nothing
                acc[2] += float(total)
                acc[3] = float(low) if acc[3] is None else min(acc[3], float(low))
                acc[4] = float(high) if acc[4] is None else max(acc[4], float(high))
                acc[5] += float(sq)
        out[n] = _summary_from_slots(edges[n], [tuple(v) for v in per.values()])
    return out


# --- categorical columns and fairness --------------------------------------------------------------------


def _prediction_key(plan: PushdownPlan) -> ColumnElement[Any]:
    assert plan.prediction is not None
    if plan.threshold is None:
        return _col(plan.prediction)
    pf = _col(plan.prediction, Float())
    return case((pf.is_(None), literal(None, Integer())),
                (pf >= literal(float(plan.threshold), Float()), literal(1, Integer())),
                else_=literal(0, Integer()))


_Counted = tuple[dict[str, list[tuple[Any, int]]], dict[str, FairnessCounts], dict[str, FairnessCounts], int]


@dataclass(frozen=True)
class _CountGroup:
    """Categorical columns and fairness feature sets counted together in one ``GROUP BY``."""

    categorical: tuple[str, ...]
    fairness: tuple[tuple[str, ...], ...]


def _count_groups(plan: PushdownPlan) -> list[_CountGroup]:
    """Columns grouped so that the combinations each ``GROUP BY`` can produce stay few.

    The number of combinations is bounded by the product of the columns' reference cardinalities
    (``plan.cardinality``, plus one for NULL and a margin for unseen values): at most
    :data:`JOINT_GROUPS`. Columns of unknown cardinality are counted alone.
    """
    def size(col: str) -> float:
        known = plan.cardinality.get(col)
        return math.inf if known is None else 2.0 * (known + 1)

    pred_size = (3.0 if plan.threshold is not None else math.inf) * (size(plan.label) if plan.label else 1.0)
    units: list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...], float]] = []
    for fs in plan.fairness:
        units.append(((), (tuple(fs),), math.prod(size(f) for f in fs) * pred_size))
    for c in plan.categorical:
        units.append(((c,), (), size(c)))
    groups: list[list[Any]] = []  # [categorical, fairness, size]
    for cats, fair, n in units:
        for g in groups:
            if g[2] * n <= JOINT_GROUPS:
                g[0] += cats
                g[1] += fair
                g[2] *= n
                break
        else:
            groups.append([cats, fair, n])
    return [_CountGroup(tuple(dict.fromkeys(g[0])), tuple(g[1])) for g in groups]


def _joint_counts(rel: Relation, plan: PushdownPlan, group: _CountGroup, where: list[ColumnElement[bool]]
                  ) -> _Counted:
    """Category counts and fairness combinations of one group's columns, from one ``GROUP BY`` over all of
    them; each column's counts are the other columns summed out."""
    names = list(dict.fromkeys([*group.categorical, *(f for fs in group.fairness for f in fs)]))
    pairs = [_category_key(_col(n), rel.backend()) for n in names]
    shown: list[ColumnElement[Any]] = [p[0] for p in pairs]
    # GROUP BY the expressions, not their aliases: not every dialect groups by alias
    keys: list[ColumnElement[Any]] = [p[1] for p in pairs]
    extras = []
    if group.fairness:
        extras.append(_prediction_key(plan))
        if plan.label:
            extras.append(_col(plan.label))
    stmt = (select(*shown, *extras, func.count()).select_from(rel.relation()).where(*where)
            .group_by(*keys, *extras))
    rows = rel.execute(stmt)
    at = {n: i for i, n in enumerate(names)}
    width = len(names) + len(extras)
    categories: dict[str, list[tuple[Any, int]]] = {}
    for c in group.categorical:
        counts: dict[Any, int] = {}
        for r in rows:
            counts[r[at[c]]] = counts.get(r[at[c]], 0) + int(r[width])
        categories[c] = list(counts.items())
    fairness: dict[str, FairnessCounts] = {}
    unlabelled: dict[str, FairnessCounts] = {}
    for fs in group.fairness:
        combos: dict[tuple[Any, ...], int] = {}
        for r in rows:
            key = (*(r[at[f]] for f in fs), *r[len(names):width])
            combos[key] = combos.get(key, 0) + int(r[width])
        name = GROUP_SEPARATOR.join(fs)
        fairness[name] = _fairness_from_rows(plan, fs, [(*k, n) for k, n in combos.items()])
        if plan.label:
            summed: dict[tuple[Any, ...], int] = {}
            for k, n in combos.items():
                summed[k[:-1]] = summed.get(k[:-1], 0) + n
            unlabelled[name] = _fairness_from_rows(replace(plan, label=None), fs, [(*k, n) for k, n in summed.items()])
    return categories, fairness, unlabelled, sum(int(r[width]) for r in rows)


def _fairness_from_rows(plan: PushdownPlan, features: Sequence[str], rows: Sequence[Sequence[Any]]) -> FairnessCounts:
    names = [f"s{i}" for i in range(len(features))]
    labelled = plan.label is not None
    frame = pd.DataFrame.from_records(list(rows), columns=[*names, "p", *(["y"] if labelled else []), "n"])
    frame = frame.rename(columns=dict(zip(names, features, strict=True)))
    frame["n"] = frame["n"].astype("int64")
    return fairness_from_combinations(frame, features=list(features), prediction="p",
                                      label="y" if labelled else None, count="n", pos_label=plan.pos_label,
                                      threshold=plan.threshold, thresholded=plan.threshold is not None)


def _category_summary(rows: Sequence[tuple[Any, int]]) -> ColumnSummary:
    """A categorical column's summary from ``(value, count)`` rows (NULL and NaN are missing values)."""
    missing = sum(n for v, n in rows if v is None or (isinstance(v, float) and math.isnan(v)))
    non_finite = sum(n for v, n in rows if isinstance(v, float) and math.isinf(v))
    return ColumnSummary(kind="categorical", missing=missing, non_finite=non_finite,
                         categories=categories_from_counts(rows))


def summarise(rel: Relation, plan: PushdownPlan, start: Any, end: Any, ids: Any = None) -> WindowAggregates:
    """Every aggregate of ``plan`` for the window [start, end) (the whole relation when both are None);
    ``ids`` bounds it in id mode (see ``SqlSource.read_window``)."""
    if plan.fairness and plan.prediction is None:
        raise SourceQueryError("fairness pushdown needs the prediction column")
    extra = [plan.prediction] if plan.fairness and plan.prediction else []
    extra += [plan.label] if plan.fairness and plan.label else []
    for name in [*plan.numerical, *plan.categorical, *(f for fs in plan.fairness for f in fs), *extra]:
        rel.need(name, "pushdown")
    where = rel.window_filter(start, end, ids) if start is not None and end is not None else []
    edges = {n: np.asarray(e, dtype=np.float64) for n, e in plan.numerical.items()}
    names = list(edges)
    jobs: list[Callable[[], Any]] = [partial(_numeric_rows, rel, names[i:i + 2], edges, where)
                                     for i in range(0, len(names), 2)]
    if plan.categorical or plan.fairness:
        jobs += [partial(_joint_counts, rel, plan, g, where) for g in _count_groups(plan)]
    if not jobs:
        jobs.append(partial(rel.execute, select(func.count()).select_from(rel.relation()).where(*where)))
    with ThreadPoolExecutor(max_workers=max(1, min(rel.concurrency, len(jobs))),
                            thread_name_prefix="aims-pushdown") as pool:
        done = [f.result() for f in [pool.submit(job) for job in jobs]]
    columns: dict[str, ColumnSummary] = {}
    fairness: dict[str, FairnessCounts] = {}
    unlabelled: dict[str, FairnessCounts] = {}
    rows = 0
    for result in done:
        if isinstance(result, dict):
            for n, (summary, total) in result.items():
                columns[n] = summary
                rows = total
        elif isinstance(result, tuple):
            categories, fair, fair_unlabelled, rows = result
            columns.update({c: _category_summary(r) for c, r in categories.items()})
            fairness.update(fair)
            unlabelled.update(fair_unlabelled)
        else:
            rows = int(result[0][0])
    return WindowAggregates(rows=rows, columns=columns, fairness=fairness, fairness_unlabelled=unlabelled)
