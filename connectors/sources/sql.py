"""SQL source: any SQLAlchemy URL, a table or a query, read one half-open time window at a time.

Identifiers from the configuration (table, schema, columns) are quoted by the dialect; values travel
as bound parameters. A ``query`` is wrapped as a subquery (``SELECT cols FROM (<query>) AS src WHERE ...``)
and kept as written: a colon in it is never taken for a bind parameter, a trailing ``;`` is dropped and
a trailing ``--`` comment cannot swallow the closing parenthesis. Connection failures and queries slower
than ``query_timeout_s`` become ``SourceUnavailable`` (retried next tick); a wrong table, column or query
becomes ``SourceQueryError``.

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

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import and_, bindparam, create_engine, event, false, func, or_, select, text
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
from connectors.sources.sql_pushdown import PushdownPlan, WindowAggregates, summarise
from metrics.fairness import GROUP_SEPARATOR, FairnessCounts
from metrics.sketch import CategoryState, HistogramState

# Driver exception class names that mean "the database is down, slow or refusing", not "bad query".
_UNAVAILABLE = {"OperationalError", "InterfaceError", "QueryCanceled", "QueryCanceledError", "TimeoutError"}


CHUNK_ROWS = 100_000
#: id mode: (the greatest id already counted, the greatest id to count now)
IdRange = tuple[Any, Any]


def _mysql_session_in_utc(dbapi_conn: Any, _record: Any) -> None:
    """MySQL/MariaDB compare TIMESTAMP columns (and return them) in the session time zone: make it UTC,
    whatever the server's default, so the window bounds (bound as UTC) mean the instants they name."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET time_zone = '+00:00'")
    finally:
        cur.close()


def query_text(query: str) -> str:
    """A configured query as the text of a subquery: as written, with nothing in it read as a bind parameter.

    SQLAlchemy's ``text()`` takes ``:name`` for a bind parameter (a literal ``'closed :old'``, a
    ``WHERE c = ':x'``); every colon is escaped, so the statement sent carries the query's own text (``::``
    casts included). A trailing ``;`` would end the outer statement and a trailing ``--`` comment would
    comment out the closing parenthesis: the semicolons are dropped and the text ends with a newline.
    """
    body = query.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return body.replace(":", "\\:") + "\n"


def query_digest(query: str) -> str:
    """SHA-256 of a configured query's text (UTF-8, as written): how evidence names a query source."""
    return hashlib.sha256(query.encode()).hexdigest()


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
        """``URL#TABLE`` (``URL#SCHEMA.TABLE``), or ``URL#query@sha256:HEX`` naming a query by its text's
        SHA-256; the URL without its password."""
        if self.config.table:
            where = f"{self.config.db_schema}.{self.config.table}" if self.config.db_schema else self.config.table
        else:
            assert self.config.query is not None
            where = f"query@sha256:{query_digest(self.config.query)}"
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
        return text(query_text(self.config.query)).columns().subquery("src")

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

    def _window_filter(self, start: datetime, end: datetime, ids: IdRange | None = None) -> ColumnElement[bool]:
        """Rows of the window [start, end); with ``ids = (counted, upto)`` (id mode), the window's rows with an
        id up to ``upto`` plus the late rows: older timestamps, ids in (counted, upto]."""
        ts_name = self.timestamp_column
        if not ts_name:
            raise SourceQueryError("a windowed SQL source needs schema.timestamp_column")
        self._need(ts_name, "timestamp")
        # typed, so the bound values are rendered the way the dialect stores datetimes
        ts = _col(ts_name, DateTime())
        in_window = and_(ts >= self._bound(start), ts < self._bound(end))
        if ids is None:
            return in_window
        counted, upto = ids
        ident = _col(self.id_column)
        if upto is None:  # nothing in the table yet
            return and_(in_window, false())
        mine = and_(in_window, ident <= bindparam(None, upto))
        if counted is None:
            return mine
        late = and_(ts < self._bound(start), ident > bindparam(None, counted), ident <= bindparam(None, upto))
        return or_(mine, late)

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str],
                    ids: IdRange | None = None) -> pd.DataFrame:
        stmt, _ = self._select(columns)
        return self._run(stmt.where(self._window_filter(start, end, ids)))

    def count_late(self, start: datetime, ids: IdRange) -> int:
        """Rows that arrived after their window was judged and are counted in this one (id mode)."""
        counted, upto = ids
        if counted is None or upto is None:
            return 0
        ts = _col(self.timestamp_column or "", DateTime())
        ident = _col(self.id_column)
        cond = and_(ts < self._bound(start), ident > bindparam(None, counted), ident <= bindparam(None, upto))
        return int(self.execute(select(func.count()).select_from(self._relation()).where(cond))[0][0])

    def max_id(self) -> Any:
        """The greatest id in the table now (id mode): what a window judged now has seen."""
        ident = _col(self.id_column)
        self._need(self.id_column, "id watermark")
        value = self.execute(select(func.max(ident)).select_from(self._relation()))[0][0]
        return value.item() if isinstance(value, np.generic) else value

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

    # -- pushdown (connectors/sources/sql_pushdown.py) ---------------------------------------------
    def backend(self) -> str:
        return str(self._url.get_backend_name())

    def relation(self) -> Any:
        return self._relation()

    def window_filter(self, start: datetime, end: datetime, ids: IdRange | None = None) -> list[ColumnElement[bool]]:
        return [self._window_filter(start, end, ids)]

    def need(self, name: str, what: str) -> None:
        self._need(name, what)

    @property
    def concurrency(self) -> int:
        return self.config.pushdown_concurrency

    def execute(self, stmt: Any) -> list[tuple[Any, ...]]:
        """The rows of an aggregate statement (few: aggregates, never a window's rows)."""
        try:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(stmt).fetchall()]
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def summarise_window(self, start: datetime | None, end: datetime | None, plan: PushdownPlan, *,
                         ids: IdRange | None = None) -> WindowAggregates:
        """Every aggregate one window's checks need, computed by the database (see ``sql_pushdown``)."""
        return summarise(self, plan, start, end, ids)

    def histogram(self, name: str, edges: npt.ArrayLike, start: datetime | None = None,
                  end: datetime | None = None) -> HistogramState:
        """Counts, sums, min, max and sum of squares per bin of ``edges`` (plus under/overflow), in SQL."""
        plan = PushdownPlan(numerical={name: np.asarray(edges, dtype=np.float64)})
        hist = self.summarise_window(start, end, plan).columns[name].histogram
        assert hist is not None
        return hist

    def category_counts(self, name: str, start: datetime | None = None, end: datetime | None = None) -> CategoryState:
        """Rows per value of a categorical column, counted in SQL."""
        cats = self.summarise_window(start, end, PushdownPlan(categorical=[name])).columns[name].categories
        assert cats is not None
        return cats

    def fairness_counts(self, *, sensitive: Sequence[str], prediction: str, label: str | None = None,
                        pos_label: object = 1, threshold: float | None = None, start: datetime | None = None,
                        end: datetime | None = None) -> FairnessCounts:
        """Confusion counts per group from one ``GROUP BY`` over (sensitive..., prediction, label).

        With a ``threshold`` the prediction is cut in SQL (``CASE WHEN pred >= t``), so scores do not
        make one row per distinct value.
        """
        plan = PushdownPlan(fairness=[list(sensitive)], prediction=prediction, label=label, pos_label=pos_label,
                            threshold=threshold)
        return self.summarise_window(start, end, plan).fairness[GROUP_SEPARATOR.join(sensitive)]

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



