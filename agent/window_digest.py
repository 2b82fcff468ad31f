"""The digest of the rows a check judged (``input_digest`` in a check run's evidence).

It names the judged data exactly, and is the same for the same rows whatever produced them: another
process, another backend (SQLite, PostgreSQL, Parquet, CSV), another column or row order, another dtype
for the same values. Column buffers are hashed, never the rows as text. The canonical form (version
``aims-input-digest/1``), which anyone can recompute:

1. Columns in name order. Each column is one of four kinds, decided by its values:

   - ``time`` (the timestamp column, date-time dtypes, date-time objects): int64 nanoseconds since the
     epoch, UTC (naive times are UTC, numbers in the timestamp column epoch seconds, as the agent reads
     timestamps);
   - ``int`` (numbers and booleans whose non-null values are all whole and within 2^53): int64;
   - ``float`` (other numbers): float64, -0.0 folded into 0.0;
   - ``text`` (anything else): UTF-8.

   Nulls (None, NaN, NaT) are a separate mask; their value slot holds 0 or the empty string.
2. Rows in the order of a 64-bit key per row, stable-sorted: starting from 0, for each column in name
   order ``key = key * 1000003 XOR pandas.util.hash_array(values, categorize=False)`` (SipHash with
   pandas' fixed key, uint64 arithmetic), then the same with the null mask if the column has nulls.
   Identical rows have identical keys, so their order among themselves does not matter.
3. SHA-256 over ``aims-input-digest/1\n``, the row count as text and a newline, then per column: the
   JSON text ``[name, kind]``, the null mask (one byte per row, 0 or 1), and the values: little-endian
   int64 or float64, or for text the int64 end offset of each value followed by the UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from connectors.sources.files import to_utc

if TYPE_CHECKING:
    from connectors.sources.sql_pushdown import WindowAggregates

FORMAT = b"aims-input-digest/1\n"
_EXACT = float(2**53)  # beyond this a float64 no longer holds every integer
_NUMERIC = {"integer", "floating", "mixed-integer-float", "decimal", "boolean"}
_TIMES = {"datetime", "datetime64", "date"}
_MIX = np.uint64(1_000_003)


def _times(series: pd.Series) -> tuple[str, np.ndarray, Any]:
    # read as the agent reads a timestamp column: naive values are UTC, numbers epoch seconds
    ts = series if pd.api.types.is_datetime64_any_dtype(series) else to_utc(series)
    if getattr(ts.dt, "tz", None) is None:
        ts = ts.dt.tz_localize("UTC")
    ns = ts.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view("int64").copy()
    mask = ts.isna().to_numpy()
    ns[mask] = 0
    return "time", mask, ns


def _numbers(series: pd.Series) -> tuple[str, np.ndarray, Any]:
    mask = series.isna().to_numpy()
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "int", mask, series.to_numpy(dtype="int64", na_value=0)
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    present = values[~mask]
    if np.all(np.isfinite(present)) and np.all(np.abs(present) <= _EXACT) and np.all(present == np.trunc(present)):
        ints = np.zeros(len(values), dtype="int64")
        ints[~mask] = present.astype("int64")
        return "int", mask, ints
    values = values + 0.0  # -0.0 equals 0.0, so it must hash as 0.0
    values[mask] = 0.0
    return "float", mask, values


def _text(series: pd.Series) -> tuple[str, np.ndarray, Any]:
    mask = series.isna().to_numpy()
    values = series.astype(object).to_numpy(copy=True)
    values[mask] = ""
    if pd.api.types.infer_dtype(values, skipna=False) != "string":  # mixed values: each as its text
        values = np.array([v if isinstance(v, str) else str(v) for v in values], dtype=object)
    return "text", mask, values


def canonical_column(series: pd.Series, *, is_time: bool = False) -> tuple[str, np.ndarray, Any]:
    """(kind, null mask, values) of one column in the canonical form."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if is_time or pd.api.types.is_datetime64_any_dtype(series):
        return _times(series)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return _numbers(series)
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred in _NUMERIC:
        return _numbers(pd.to_numeric(series, errors="coerce"))
    if inferred in _TIMES:
        return _times(series)
    if inferred == "empty":  # nothing but nulls: no values to decide the kind by
        mask = np.ones(len(series), dtype=bool)
        return "int", mask, np.zeros(len(series), dtype="int64")
    return _text(series)


def _row_order(canon: list[tuple[str, np.ndarray, Any]], n: int) -> np.ndarray:
    """A row order that depends on the rows only (see step 2 of the module docstring)."""
    if n < 2 or not canon:
        return np.arange(n)
    key = np.zeros(n, dtype=np.uint64)
    for _, mask, values in canon:
        # a null mask joins the key only where the column has nulls (a null and a 0 then differ)
        for part in (values, mask) if mask.any() else (values,):
            key = (key * _MIX) ^ pd.util.hash_array(part, categorize=False)
    return np.argsort(key, kind="stable")


def input_digest(frame: pd.DataFrame, *, columns: Sequence[str] | None = None,
                 timestamp_column: str | None = None) -> str:
    """SHA-256 of ``frame``'s rows (``columns`` of it that exist, default all) in the canonical form above."""
    names = sorted({str(c) for c in (columns if columns is not None else frame.columns)} & {str(c) for c in
                                                                                              frame.columns})
    canon = {name: canonical_column(frame[name], is_time=name == timestamp_column) for name in names}
    n = len(frame)
    order = _row_order(list(canon.values()), n)
    h = hashlib.sha256(FORMAT + f"{n}\n".encode())
    for name, (kind, mask, values) in canon.items():
        h.update(json.dumps([name, kind]).encode())
        h.update(mask[order].astype("u1").tobytes())
        if kind == "text":
            # converted in the frame's own order (memory-local), then reordered by Arrow: several times
            # faster than converting the reordered objects
            arr = pa.array(values, type=pa.large_string()).take(pa.array(order))
            offsets = np.frombuffer(arr.buffers()[1], dtype="<i8", count=n + 1, offset=arr.offset * 8)
            h.update((offsets[1:] - offsets[0]).astype("<i8").tobytes())
            data = arr.buffers()[2]
            if data is not None:
                h.update(memoryview(data)[int(offsets[0]):int(offsets[-1])])
        else:
            h.update(np.ascontiguousarray(values[order]).astype("<i8" if kind in ("int", "time") else "<f8")
                     .tobytes())
    return h.hexdigest()


AGGREGATES_FORMAT = b"aims-aggregates-digest/1\n"


def aggregates_digest(agg: WindowAggregates) -> str:
    """The digest of a window judged from aggregates (SQL pushdown): what the database sent, canonically.

    SHA-256 over ``aims-aggregates-digest/1\\n`` and the compact JSON (sorted keys) of: the row count; per
    column its missing, non-finite and type-error counts, its histogram (edges, counts, per-bin sums as
    float hex, minimum, maximum) and its category counts (as ``[category text, count]`` pairs, sorted);
    per fairness feature set its groups and confusion counts. The same aggregates give the same digest
    whatever the order the database returned them in.
    """
    from metrics.quality import category_key

    def hexed(x: float) -> str:
        return float(x).hex()

    columns: dict[str, Any] = {}
    for name, c in agg.columns.items():
        entry: dict[str, Any] = {"kind": c.kind, "missing": c.missing, "non_finite": c.non_finite,
                                 "type_errors": c.type_errors}
        if c.histogram is not None:
            h = c.histogram
            entry["histogram"] = {"edges": [hexed(e) for e in h.edges], "counts": h.counts.tolist(),
                                  "sums": [hexed(float(x)) for x in h.sums], "min": hexed(h.minimum),
                                  "max": hexed(h.maximum)}
        if c.categories is not None:
            entry["categories"] = sorted([category_key(k), int(n)] for k, n in c.categories.counts.items())
        columns[name] = entry
    fairness = {name: {"groups": list(f.groups), "counts": f.counts.tolist()} for name, f in agg.fairness.items()}
    body = json.dumps({"rows": agg.rows, "columns": columns, "fairness": fairness}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(AGGREGATES_FORMAT + body.encode()).hexdigest()
