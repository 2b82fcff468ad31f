"""SQL source: any SQLAlchemy URL, a table or a query, read one half-open time window at a time.

Identifiers from the configuration (table, schema, columns) are quoted by the dialect; values travel
as bound parameters. Connection failures and queries slower than ``query_timeout_s`` become
``SourceUnavailable`` (retried next tick); a wrong table, column or query becomes ``SourceQueryError``.

Two more ways to read than the time window:

* **id mode** (``watermark: {column: id, kind: id}``): :meth:`SqlSource.read_after` returns the rows
  whose id is greater than the last one processed, in id order, at most ``limit`` of them, so a
  table whose timestamps arrive out of order (or late) is still read exactly once, restart-safe, by
  persisting the last id. ``read_window`` keeps filtering on the timestamp column.
* **pushdown**: :meth:`SqlSource.histogram`, :meth:`SqlSource.category_counts` and
  :meth:`SqlSource.fairness_counts` run a ``GROUP BY`` in the database so only aggregates travel; the
  results are the states of :mod:`metrics.sketch` and :mod:`metrics.fairness` (see
  :mod:`metrics.pushdown` for why they equal the in-process ones).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import (
    Float,
    Integer,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    literal,
    not_,
    select,
    text,
)
from sqlalchemy import (
    column as sa_column,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql import ColumnElement, table
from sqlalchemy.sql.elements import quoted_name
from sqlalchemy.types import DateTime

from config.errors import SourceQueryError, SourceUnavailable
from config.model import SqlSourceConfig
from metrics.fairness import GROUP_SEPARATOR, FairnessCounts
from metrics.pushdown import categories_from_counts, fairness_from_combinations, histogram_from_bins
from metrics.sketch import CategoryState, HistogramState

# Driver exception class names that mean "the database is down, slow or refusing", not "bad query".
_UNAVAILABLE = {"OperationalError", "InterfaceError", "QueryCanceled", "QueryCanceledError", "TimeoutError"}


CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class WindowAggregates:
    """What a window's drift, category and fairness checks need, computed in the database."""

    rows: int
    histograms: dict[str, HistogramState]
    categories: dict[str, CategoryState]
    fairness: dict[str, FairnessCounts]  # keyed by the features joined with "+"


def _mysql_session_in_utc(dbapi_conn: Any, _record: Any) -> None:
    """MySQL/MariaDB compare TIMESTAMP columns (and return them) in the session time zone: make it UTC,
    whatever the server's default, so the window bounds (bound as UTC) mean the instants they name."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET time_zone = '+00:00'")
    finally:
        cur.close()


def _col(name: str, type_: Any = None) -> ColumnElement[Any]:
    return sa_column(quoted_name(name, quote=True), type_=type_)


class SqlSource:
    config_model: ClassVar[type[SqlSourceConfig]] = SqlSourceConfig

    def __init__(self, config: SqlSourceConfig, *, timestamp_column: str | None, **_: Any) -> None:
        self.config = config
        self.timestamp_column = timestamp_column
        raw = config.url.get_secret_value()
        try:
            self._url = make_url(raw)
        except ArgumentError as exc:
            raise SourceQueryError(f"bad SQLAlchemy URL: {exc}") from exc
        self._engine: Engine | None = None
        self._columns: list[str] | None = None

    def describe(self) -> str:
        where = self.config.table or "query"
        return f"{self._url.render_as_string(hide_password=True)}#{where}"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            backend = self._url.get_backend_name()
            timeout = self.config.connect_timeout_s
            query_ms = int(self.config.query_timeout_s * 1000)
            if backend == "postgresql":
                # the server cancels a slower statement itself, so nothing is left running there; the
                # session is in UTC so timestamptz columns compare with the (UTC) window bounds
                kwargs["connect_args"] = {"connect_timeout": int(max(1, timeout)),
                                          "options": f"-c statement_timeout={query_ms} -c TimeZone=UTC"}
            elif backend in ("mysql", "mariadb"):
                kwargs["connect_args"] = {"connect_timeout": int(max(1, timeout)),
                                          "read_timeout": int(max(1, self.config.query_timeout_s)),
                                          "write_timeout": int(max(1, self.config.query_timeout_s))}
            elif backend == "sqlite":
                kwargs["connect_args"] = {"timeout": timeout}
            try:
                self._engine = create_engine(self._url, **kwargs)
            except (NoSuchModuleError, ImportError) as exc:
                raise SourceQueryError(f"no driver for {backend}: {exc} (install the driver package)") from exc
            if backend in ("mysql", "mariadb"):
                event.listen(self._engine, "connect", _mysql_session_in_utc)
        return self._engine

    def _relation(self) -> Any:
        if self.config.table:
            schema = quoted_name(self.config.db_schema, quote=True) if self.config.db_schema else None
            return table(quoted_name(self.config.table, quote=True), schema=schema)
        assert self.config.query is not None
        return text(self.config.query).columns().subquery("src")

    def available_columns(self) -> list[str]:
        if self._columns is None:
            try:
                # an empty SELECT rather than the inspector: it works the same on every dialect
                # (duckdb-engine's inspector needs catalog tables DuckDB lacks) and for a query
                with self.engine.connect() as conn:
                    res = conn.execute(select(text("*")).select_from(self._relation()).limit(0))
                    self._columns = list(res.keys())
            except NoSuchTableError as exc:
                raise SourceQueryError(f"{self.describe()}: no such table {self.config.table!r}") from exc
            except SQLAlchemyError as exc:
                raise self._translate(exc) from exc
        return self._columns

    def _need(self, name: str, what: str) -> None:
        if name not in self.available_columns():
            raise SourceQueryError(f"{self.describe()}: no {what} column {name!r}")

    def _select(self, columns: Sequence[str]) -> Any:
        have = self.available_columns()
        wanted = [c for c in dict.fromkeys(columns) if c in have]
        rel = self._relation()
        return select(*[_col(c) for c in wanted]).select_from(rel), rel

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        stmt, _ = self._select(columns)
        return self._run(stmt)

    def _window_filter(self, start: datetime, end: datetime) -> ColumnElement[bool]:
        ts_name = self.timestamp_column
        if not ts_name:
            raise SourceQueryError("a windowed SQL source needs schema.timestamp_column")
        self._need(ts_name, "timestamp")
        # typed, so the bound values are rendered the way the dialect stores datetimes
        ts = _col(ts_name, DateTime())
        return and_(ts >= self._bound(start), ts < self._bound(end))

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        stmt, _ = self._select(columns)
        return self._run(stmt.where(self._window_filter(start, end)))

    # -- id mode -----------------------------------------------------------------------------------
    @property
    def id_column(self) -> str:
        wm = self.config.watermark
        if wm is None or wm.kind != "id":
            raise SourceQueryError(f"{self.describe()}: reading after an id needs `watermark: {{kind: id}}`")
        return wm.column

    def read_after(self, last_id: Any, *, limit: int, columns: Sequence[str]) -> pd.DataFrame:
        """Up to ``limit`` rows with ``id > last_id`` (all rows when ``last_id`` is None), in id order.

        The caller persists the greatest id of what it processed (see :meth:`last_id`) in the same
        transaction as its results; after a crash it asks again from the persisted id and gets the
        same rows, because ids only grow.
        """
        if limit < 1:
            raise SourceQueryError("read_after needs a positive limit")
        idc = self.id_column
        self._need(idc, "id watermark")
        stmt, _ = self._select([*columns, idc])
        ident = _col(idc)
        if last_id is not None:
            stmt = stmt.where(ident > bindparam("last_id", last_id))
        return self._run(stmt.order_by(ident).limit(limit))

    def last_id(self, frame: pd.DataFrame) -> Any:
        """The greatest id in a frame returned by :meth:`read_after` (None when it is empty)."""
        idc = self.id_column
        if frame.empty:
            return None
        value = frame[idc].max()
        return value.item() if isinstance(value, np.generic) else value

    # -- pushdown ----------------------------------------------------------------------------------
    def _aggregate(self, cols: Sequence[Any], group: Sequence[Any], where: Sequence[ColumnElement[bool]]) -> list[
            tuple[Any, ...]]:
        stmt = select(*cols).select_from(self._relation()).where(*where).group_by(*group)
        try:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(stmt).fetchall()]
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def _finite(self, x: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [x.is_not(None)]
        if self._url.get_backend_name() in ("postgresql", "duckdb"):
            # these store NaN and infinities; the in-process path drops non-finite values
            conds += [x != literal(float("nan"), Float()), x != literal(float("inf"), Float()),
                      x != literal(float("-inf"), Float())]
        return conds

    def _slot(self, name: str, e: npt.NDArray[np.float64]) -> ColumnElement[Any]:
        """The slot of each value on edges ``e``: NULL for NULL and non-finite values.

        The slot of a value is the number of edges at or below it (numpy's ``searchsorted(side="right")``),
        with the top edge closed; it is a ``CASE`` over bound edges (``width_bucket`` on PostgreSQL).
        """
        x = sa_column(quoted_name(name, quote=True), type_=Float())
        top = float(e[-1])
        skip = (not_(and_(*self._finite(x))), literal(None, Integer()))
        if self._url.get_backend_name() == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION

            thresholds = literal([float(v) for v in e], ARRAY(DOUBLE_PRECISION))
            inner: ColumnElement[Any] = func.width_bucket(func.cast(x, DOUBLE_PRECISION), thresholds)
            return case(skip, (x == literal(top, Float()), literal(e.size - 1, Integer())), else_=inner)
        whens: list[tuple[ColumnElement[bool], Any]] = [skip]
        whens += [(x < literal(float(v), Float()), literal(i, Integer())) for i, v in enumerate(e)]
        whens.append((x == literal(top, Float()), literal(e.size - 1, Integer())))
        return case(*whens, else_=literal(e.size, Integer()))

    def histograms(self, edges: Mapping[str, npt.ArrayLike], start: datetime | None = None,
                   end: datetime | None = None) -> tuple[dict[str, HistogramState], int]:
        """Histograms of several columns from ONE scan, and the number of rows in the window.

        ``GROUP BY`` the slots of all the columns together, with ``COUNT`` and each column's ``SUM``,
        ``MIN``, ``MAX`` and sum of squares per group; each column's histogram is the other slots summed
        out. Counts, minimum and maximum are exact; a bin's sum is a sum of the database's partial sums.
        """
        names = list(edges)
        arrays = {n: np.asarray(edges[n], dtype=np.float64) for n in names}
        for n in names:
            self._need(n, "numerical")
        slots = [self._slot(n, arrays[n]).label(f"k{i}") for i, n in enumerate(names)]
        aggs: list[Any] = [func.count()]
        for n in names:
            xf = sa_column(quoted_name(n, quote=True), type_=Float())
            aggs += [func.sum(xf), func.min(xf), func.max(xf), func.sum(xf * xf)]
        where = [self._window_filter(start, end)] if start is not None and end is not None else []
        rows = self._aggregate([*slots, *aggs], [s.element for s in slots], where)
        k = len(names)
        out: dict[str, HistogramState] = {}
        for i, n in enumerate(names):
            base = k + 1 + 4 * i
            per = [(r[i], r[k], r[base], r[base + 1], r[base + 2], r[base + 3]) for r in rows if r[i] is not None]
            out[n] = histogram_from_bins(arrays[n], per)
        return out, int(sum(int(r[k]) for r in rows))

    def histogram(self, name: str, edges: npt.ArrayLike, start: datetime | None = None,
                  end: datetime | None = None) -> HistogramState:
        """Counts, sums, min, max and sum of squares per bin of ``edges`` (plus under/overflow), in SQL."""
        return self.histograms({name: edges}, start, end)[0][name]

    def category_counts(self, name: str, start: datetime | None = None, end: datetime | None = None) -> CategoryState:
        """Rows per value of a categorical column, counted in SQL."""
        self._need(name, "categorical")
        c = _col(name)
        where: list[ColumnElement[bool]] = [c.is_not(None)]
        if start is not None and end is not None:
            where.append(self._window_filter(start, end))
        return categories_from_counts(self._aggregate([c, func.count()], [c], where))

    def fairness_counts(self, *, sensitive: Sequence[str], prediction: str, label: str | None = None,
                        pos_label: object = 1, threshold: float | None = None, start: datetime | None = None,
                        end: datetime | None = None) -> FairnessCounts:
        """Confusion counts per group from one ``GROUP BY`` over (sensitive..., prediction, label).

        With a ``threshold`` the prediction is cut in SQL (``CASE WHEN pred >= t``), so scores do not
        make one row per distinct value.
        """
        for name in [*sensitive, prediction, *([label] if label else [])]:
            self._need(name, "fairness")
        pred = _col(prediction)
        pred_key: ColumnElement[Any] = pred
        if threshold is not None:
            pf = sa_column(quoted_name(prediction, quote=True), type_=Float())
            pred_key = case((pf.is_(None), literal(None, Integer())),
                            (pf >= literal(float(threshold), Float()), literal(1, Integer())),
                            else_=literal(0, Integer()))
        keys: list[ColumnElement[Any]] = [_col(s).label(f"s{i}") for i, s in enumerate(sensitive)]
        keys.append(pred_key.label("p"))
        if label:
            keys.append(_col(label).label("y"))
        where = [self._window_filter(start, end)] if start is not None and end is not None else []
        group = [k.element for k in keys]  # GROUP BY the expressions: not every dialect groups by alias
        rows = self._aggregate([*keys, func.count().label("n")], group, where)
        names = [f"s{i}" for i in range(len(sensitive))]
        frame = pd.DataFrame.from_records(rows, columns=[*names, "p", *(["y"] if label else []), "n"])
        frame = frame.rename(columns=dict(zip(names, sensitive, strict=True)))
        if frame.empty:
            frame["n"] = frame["n"].astype("int64")
        return fairness_from_combinations(frame, features=list(sensitive), prediction="p",
                                          label="y" if label else None, count="n", pos_label=pos_label,
                                          threshold=threshold, thresholded=threshold is not None)

    def aggregate_window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        numerical: Mapping[str, npt.ArrayLike],
        categorical: Sequence[str] = (),
        fairness: Sequence[Sequence[str]] = (),
        prediction: str | None = None,
        label: str | None = None,
        pos_label: object = 1,
        threshold: float | None = None,
    ) -> WindowAggregates:
        """Every aggregate one window's checks need, as concurrent ``GROUP BY`` queries.

        ``numerical`` maps a column to the reference's bin edges; ``fairness`` lists the sensitive
        feature sets (one feature, or several for an intersection). ``pushdown_concurrency``
        connections run the queries side by side, so the database scans the table in parallel.
        """
        jobs: dict[tuple[str, str], Callable[[], Any]] = {}
        # one column per query: binning two columns in one scan (``histograms``) was measured no faster on
        # PostgreSQL, whose cost here is per row and per aggregate, and it sends ~100x more groups back
        for name, edges in numerical.items():
            jobs[("h", name)] = partial(self.histograms, {name: edges}, start, end)
        for name in categorical:
            jobs[("c", name)] = partial(self.category_counts, name, start, end)
        if fairness and prediction is None:
            raise SourceQueryError("fairness pushdown needs the prediction column")
        for features in fairness:
            assert prediction is not None
            jobs[("f", GROUP_SEPARATOR.join(features))] = partial(
                self.fairness_counts, sensitive=list(features), prediction=prediction, label=label,
                pos_label=pos_label, threshold=threshold, start=start, end=end)
        if not numerical:  # otherwise the histogram scans count the window's rows on the way
            where = [self._window_filter(start, end)] if start is not None and end is not None else []
            jobs[("n", "")] = partial(self._aggregate, [func.count()], [], where)
        with ThreadPoolExecutor(max_workers=self.config.pushdown_concurrency,
                                thread_name_prefix="aims-pushdown") as pool:
            futures = {key: pool.submit(job) for key, job in jobs.items()}
            done = {key: f.result() for key, f in futures.items()}
        histograms: dict[str, HistogramState] = {}
        rows = 0
        for (t, _), v in done.items():
            if t == "h":
                histograms.update(v[0])
                rows = v[1]
            elif t == "n":
                rows = int(v[0][0])
        return WindowAggregates(
            rows=rows,
            histograms=histograms,
            categories={k: v for (t, k), v in done.items() if t == "c"},
            fairness={k: v for (t, k), v in done.items() if t == "f"},
        )

    # -- plumbing ----------------------------------------------------------------------------------
    def _bound(self, ts: datetime) -> datetime:
        # naive UTC: compared as is with TIMESTAMP WITHOUT TIME ZONE / DATETIME columns (which hold UTC),
        # and read in the session time zone, set to UTC on connect, against timestamptz / MySQL TIMESTAMP
        return ts.astimezone(UTC).replace(tzinfo=None)

    def _run(self, stmt: Any) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                # streamed (server-side cursor where the driver has one) and turned into frames chunk by
                # chunk: holding every row as Python tuples first costs ~10x the frame's memory
                result = conn.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS).execute(stmt)
                keys = list(result.keys())
                frames = [pd.DataFrame.from_records(part, columns=keys) for part in result.partitions(CHUNK_ROWS)]
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc
        if not frames:
            return pd.DataFrame(columns=keys)
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _translate(self, exc: SQLAlchemyError) -> Exception:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = first[0] if first else exc.__class__.__name__
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return SourceUnavailable(f"{self.describe()}: connection lost: {reason}")
        name = type(getattr(exc, "orig", exc)).__name__
        low = reason.lower()
        if (name in _UNAVAILABLE and "no such" not in low) or "connect" in low or "timeout" in low \
                or "timed out" in low or "canceling statement" in low:
            return SourceUnavailable(f"{self.describe()}: {reason}")
        return SourceQueryError(f"{self.describe()}: {reason}")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None



