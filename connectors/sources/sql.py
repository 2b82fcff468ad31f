"""SQL source: any SQLAlchemy URL, a table or a query, read one half-open time window at a time.

Identifiers from the configuration (table, schema, columns) are quoted by the dialect; values travel
as bound parameters. Connection failures become ``SourceUnavailable`` (retried next tick); a wrong
table, column or query becomes ``SourceQueryError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
from sqlalchemy import DateTime, Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql import column, table
from sqlalchemy.sql.elements import quoted_name

from config.errors import SourceQueryError, SourceUnavailable
from config.model import SqlSourceConfig


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
            if backend in ("postgresql", "mysql", "mariadb"):
                kwargs["connect_args"] = {"connect_timeout": int(max(1, timeout))}
            elif backend == "sqlite":
                kwargs["connect_args"] = {"timeout": timeout}
            try:
                self._engine = create_engine(self._url, **kwargs)
            except (NoSuchModuleError, ImportError) as exc:
                raise SourceQueryError(f"no driver for {backend}: {exc} (install the driver package)") from exc
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
                if self.config.table:
                    cols = inspect(self.engine).get_columns(self.config.table, schema=self.config.db_schema)
                    self._columns = [c["name"] for c in cols]
                else:
                    assert self.config.query is not None
                    with self.engine.connect() as conn:
                        res = conn.execute(select(text("*")).select_from(
                            text(f"({self.config.query}) AS src")).limit(0))
                        self._columns = list(res.keys())
            except NoSuchTableError as exc:
                raise SourceQueryError(f"{self.describe()}: no such table {self.config.table!r}") from exc
            except SQLAlchemyError as exc:
                raise self._translate(exc) from exc
        return self._columns

    def _select(self, columns: Sequence[str]) -> Any:
        have = self.available_columns()
        wanted = [c for c in columns if c in have]
        rel = self._relation()
        return select(*[column(quoted_name(c, quote=True)) for c in wanted]).select_from(rel), rel

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        stmt, _ = self._select(columns)
        return self._run(stmt)

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        ts_name = self.timestamp_column
        if not ts_name:
            raise SourceQueryError("a windowed SQL source needs schema.timestamp_column")
        if ts_name not in self.available_columns():
            raise SourceQueryError(f"{self.describe()}: no timestamp column {ts_name!r}")
        stmt, _ = self._select(columns)
        # typed, so the bound values are rendered the way the dialect stores datetimes
        ts = column(quoted_name(ts_name, quote=True), type_=DateTime())
        lo, hi = self._bound(start), self._bound(end)
        stmt = stmt.where(ts >= lo, ts < hi)
        return self._run(stmt)

    def _bound(self, ts: datetime) -> datetime:
        # most drivers compare naive UTC against TIMESTAMP WITHOUT TIME ZONE columns as expected
        return ts.astimezone(UTC).replace(tzinfo=None)

    def _run(self, stmt: Any) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                result = conn.execute(stmt)
                rows = result.fetchall()
                return pd.DataFrame.from_records(rows, columns=list(result.keys()))
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: SQLAlchemyError) -> Exception:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = first[0] if first else exc.__class__.__name__
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return SourceUnavailable(f"{self.describe()}: connection lost: {reason}")
        name = type(getattr(exc, "orig", exc)).__name__
        if name in {"OperationalError", "InterfaceError"} or "connect" in reason.lower():
            return SourceUnavailable(f"{self.describe()}: {reason}")
        return SourceQueryError(f"{self.describe()}: {reason}")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
