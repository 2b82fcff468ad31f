"""HTTP pull source: a JSON endpoint that returns prediction records, with cursor or page pagination.

Each request carries the auth header from the secrets (``auth_value``, never logged) and, when
configured, the window as query parameters so the server filters; the agent filters by the timestamp
column again either way. Pagination stops at an empty page, a missing cursor, or ``max_pages``. A
refused connection, a timeout or a 5xx is ``SourceUnavailable``; a 4xx or a body that is not the
expected JSON is ``SourceQueryError``. The total body size is bounded by ``max_bytes``: answers are
read as they stream in and reading stops at the limit (an announced larger ``Content-Length`` is
refused before its body is read). Records whose timestamp is missing or not a time are reported
through ``rejected()`` instead of being dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pandas as pd

from config.errors import SourceQueryError, SourceUnavailable
from config.model import HttpSourceConfig
from connectors.base import RejectedRecord, Rejections
from connectors.sources.files import rows_in_window


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split(".") if dotted else []:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


class HttpSource:
    config_model: ClassVar[type[HttpSourceConfig]] = HttpSourceConfig

    def __init__(self, config: HttpSourceConfig, *, timestamp_column: str | None, **_: Any) -> None:
        self.config = config
        self.timestamp_column = timestamp_column
        headers = {"Accept": "application/json"}
        if config.auth_value is not None:
            headers[config.auth_header] = config.auth_value.get_secret_value()
        self._client = httpx.Client(timeout=config.timeout_s, headers=headers, follow_redirects=False)
        self._skipped = Rejections(self.describe())

    def rejected(self) -> list[RejectedRecord]:
        return self._skipped.items()

    def describe(self) -> str:
        return f"http:{httpx.URL(self.config.url).copy_with(query=None)}"

    def _get(self, params: dict[str, str]) -> Any:
        limit = self.config.max_bytes
        try:
            with self._client.stream("GET", self.config.url, params=params) as resp:
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise SourceUnavailable(f"{self.describe()}: HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise SourceQueryError(f"{self.describe()}: HTTP {resp.status_code}")
                announced = resp.headers.get("content-length", "")
                if announced.isdigit() and self._bytes + int(announced) > limit:
                    raise SourceQueryError(f"{self.describe()}: the answer announces {int(announced)} bytes; "
                                           f"with the pages before it that exceeds max_bytes={limit}")
                chunks: list[bytes] = []
                # read as it arrives and stop at the limit: a huge or endless answer is never held whole
                for chunk in resp.iter_bytes():
                    self._bytes += len(chunk)
                    if self._bytes > limit:
                        raise SourceQueryError(f"{self.describe()}: answers exceed max_bytes={limit}; "
                                               f"stopped reading after {self._bytes} bytes")
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"{self.describe()}: timed out after {self.config.timeout_s}s") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc
        try:
            return json.loads(b"".join(chunks))
        except ValueError as exc:
            raise SourceQueryError(f"{self.describe()}: the answer is not JSON") from exc

    def _pull(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        cfg = self.config
        self._bytes = 0
        base = dict(cfg.params)
        if start is not None and end is not None:
            if cfg.start_param:
                base[cfg.start_param] = start.isoformat()
            if cfg.end_param:
                base[cfg.end_param] = end.isoformat()
        records: list[dict[str, Any]] = []
        cursor: str | None = None
        page = cfg.first_page
        for _ in range(cfg.max_pages):
            params = dict(base)
            if cfg.pagination == "cursor" and cursor is not None:
                params[cfg.cursor_param] = cursor
            elif cfg.pagination == "page":
                params[cfg.page_param] = str(page)
                if cfg.page_size_param:
                    params[cfg.page_size_param] = str(cfg.page_size)
            doc = self._get(params)
            batch = doc if isinstance(doc, list) and not cfg.records else _dig(doc, cfg.records)
            if not isinstance(batch, list) or not all(isinstance(r, dict) for r in batch):
                raise SourceQueryError(f"{self.describe()}: `{cfg.records}` is not a list of records")
            records.extend(batch)
            if cfg.pagination == "none" or not batch:
                break
            if cfg.pagination == "cursor":
                nxt = _dig(doc, cfg.cursor_field)
                if nxt in (None, "") or nxt == cursor:
                    break
                cursor = str(nxt)
            else:
                page += 1
        else:
            raise SourceQueryError(f"{self.describe()}: more than max_pages={cfg.max_pages} pages")
        return pd.DataFrame.from_records(records)

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        df = self._pull(None, None)
        return df[[c for c in columns if c in df.columns]] if not df.empty else df

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        if not self.timestamp_column:
            raise SourceQueryError("a windowed HTTP source needs schema.timestamp_column")
        self._skipped.clear()
        df = self._pull(start, end)
        if df.empty:
            return df
        if self.timestamp_column not in df.columns:
            raise SourceQueryError(f"{self.describe()}: records have no {self.timestamp_column!r}")
        df = rows_in_window(df, self.timestamp_column, start, end, self._skipped, self.describe())
        return df[[c for c in columns if c in df.columns]]

    def close(self) -> None:
        self._client.close()
