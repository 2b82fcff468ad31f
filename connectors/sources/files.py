"""File source: Parquet, CSV and JSON Lines, from one file, a folder or a glob, local or in an object store.

``read_table`` is also what ``aims-agent compare`` uses, so every file path in the product reads data
the same way and fails with the same one-line reasons.

* **Time partitions.** Folders named hive-style (``dt=YYYY-MM-DD``, ``date=...``, ``hour=HH``,
  ``year=/month=/day=``) are pruned by the window: a file whose partition cannot overlap the window is
  never opened.
* **Object stores.** A path with a scheme (``s3://``, ``gs://``, ``abfs://``, ``file://``) is listed and
  read through fsspec; the backend package (s3fs, gcsfs, adlfs) is the user's to install.
* **KServe blob-storage logger** (``layout: kserve``): the objects ``{id}-request.{ext}`` and
  ``{id}-response.{ext}`` of one folder are joined on (folder, ``id``) and their v1/v2 payloads turned
  into rows; the timestamp is the response object's modification time. The listing's modification
  times select the pairs of the window before any object is opened.
* Nothing is coerced: a CSV cell that is not a number keeps its text, so data quality reports it as a
  type error instead of the source turning it into a missing value.
* One bad record never fails the window: in a folder or glob, a file that cannot be read, a KServe
  pair that cannot be joined, and rows whose timestamp is missing or not a time are skipped, logged
  and reported through ``rejected()`` (``bad_record`` data-quality findings). A single configured
  file that cannot be read is a ``SourceQueryError``: then the configuration is what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import glob as globlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from config.errors import InputError, SourceQueryError, SourceUnavailable
from config.model import FileSourceConfig
from connectors.base import RejectedRecord, Rejections

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl"}


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown file type {path.suffix!r} (use .parquet, .csv or .jsonl)")
    return fmt


#: A file with more columns than this is refused before it is parsed: a hostile or broken header of
#: millions of columns would otherwise take minutes and gigabytes to read (and judge).
MAX_COLUMNS = 20_000
#: The longest first line (CSV header, first JSON record) looked at to count the columns.
MAX_HEADER_BYTES = 64 * 1024 * 1024


def column_count(source: Path | bytes, kind: str) -> int:
    """How many columns a file (or an object's bytes) declares, from its schema or its first line, without
    parsing the rest."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return len(pq.read_schema(source if isinstance(source, Path) else io.BytesIO(source)).names)
    if isinstance(source, Path):
        with source.open("rb") as fh:
            first = fh.readline(MAX_HEADER_BYTES + 1)
    else:
        first = source[:MAX_HEADER_BYTES + 1].split(b"\n", 1)[0]
    if len(first) > MAX_HEADER_BYTES:
        raise InputError(f"the first line is longer than {MAX_HEADER_BYTES // (1024 * 1024)} MiB")
    text = first.decode("utf-8", errors="replace")
    if kind == "csv":
        import csv

        return len(next(csv.reader([text]), []))
    try:
        record = json.loads(text) if text.strip() else {}
    except ValueError:
        return 0  # the reader reports what is wrong with it
    return len(record) if isinstance(record, dict) else 0


def check_width(source: Path | bytes, kind: str, name: str | Path) -> None:
    """InputError when the file declares more than :data:`MAX_COLUMNS` columns (or cannot say)."""
    try:
        width = column_count(source, kind)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{name}: cannot read as {kind}: {first}") from exc
    refuse_wide(width, name)


def refuse_wide(width: int, name: str | Path) -> None:
    if width > MAX_COLUMNS:
        raise InputError(f"{name}: has {width:,} columns, more than the {MAX_COLUMNS:,} the agent reads from one "
                         "file")


def read_table(path: str | Path, *, fmt: str = "auto", columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read one Parquet/CSV/JSON Lines file; any failure becomes an InputError with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file")
    kind = detect_format(p, fmt)
    if kind != "parquet":
        check_width(p, kind, p)  # from the first line; a Parquet file's schema is read once, below
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(p).names
            refuse_wide(len(names), p)
            present = set(names)
            wanted = None if columns is None else [c for c in columns if c in present]
            df = pq.read_table(p, columns=wanted).to_pandas()
        elif kind == "csv":
            df = pd.read_csv(p, usecols=(lambda c: c in set(columns)) if columns is not None else None,
                             low_memory=False)
        else:
            df = pd.read_json(p, lines=True, dtype=False, convert_dates=False)
            if columns is not None:
                df = df[[c for c in columns if c in df.columns]]
    except InputError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{p}: the file is empty") from exc
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{p}: cannot read as {kind}: {first}") from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{p}: cannot read as {kind}: {first}") from exc
    return df


def to_utc(series: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC; naive values are taken as UTC, numbers as epoch seconds."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return pd.to_datetime(series, unit="s", utc=True, errors="coerce")
    return pd.to_datetime(series, utc=True, errors="coerce", format="mixed")


def rows_in_window(df: pd.DataFrame, column: str, start: datetime, end: datetime, skipped: Rejections,
                   where: str) -> pd.DataFrame:
    """The rows with ``start <= column < end``; rows whose timestamp is missing or not a time belong to
    no window, so they are reported to ``skipped`` instead of vanishing."""
    ts = to_utc(df[column])
    unreadable = ts.isna().to_numpy()
    if unreadable.any():
        n = int(unreadable.sum())
        examples = ", ".join(repr(v)[:40] for v in df.loc[unreadable, column].head(3).tolist())
        skipped.add(where, f"{n} row(s) whose {column!r} is missing or not a time (e.g. {examples})", count=n)
    mask = ((ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))).to_numpy()
    return df.loc[mask].reset_index(drop=True)


@dataclass(frozen=True)
class Listed:
    """One object of a listing, with its modification time when the listing gives one."""

    name: str
    modified: datetime | None = None


def _info_time(info: dict[str, Any]) -> datetime | None:
    """The modification time in an fsspec ``info`` dict (keys differ by backend)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(key)
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=UTC)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return datetime.fromtimestamp(float(v), tz=UTC)
        if isinstance(v, str) and v:
            try:
                stamp = pd.Timestamp(v)
            except ValueError:
                continue
            stamp = stamp.tz_convert(UTC) if stamp.tzinfo else stamp.tz_localize(UTC)
            when: datetime = stamp.to_pydatetime()
            return when
    return None


_PART = re.compile(r"^(dt|date|year|month|day|hour)=(.+)$")
_KSERVE = re.compile(r"^(?P<id>.+)-(?P<kind>request|response)\.(?P<ext>json|jsonl|csv|parquet)$")


def partition_span(path: str) -> tuple[datetime, datetime] | None:
    """The time span a hive-style partitioned path covers, or None when it names no time partition."""
    parts: dict[str, str] = {}
    for seg in path.replace("\\", "/").split("/"):
        m = _PART.match(seg)
        if m:
            parts[m.group(1)] = m.group(2)
    try:
        day_text = parts.get("dt") or parts.get("date")
        if day_text:
            day = datetime.strptime(day_text[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        elif "year" in parts:
            day = datetime(int(parts["year"]), int(parts.get("month", 1)), int(parts.get("day", 1)), tzinfo=UTC)
        else:
            return None
    except ValueError:
        return None  # not a date after all: read it rather than guess
    if "hour" in parts and parts["hour"].isdigit():
        start = day + timedelta(hours=int(parts["hour"]))
        return start, start + timedelta(hours=1)
    if "day" in parts or day_text:
        return day, day + timedelta(days=1)
    if "month" in parts:
        nxt = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
        return day, nxt
    return day, datetime(day.year + 1, 1, 1, tzinfo=UTC)


class FileSource:
    """Reads every matching file (pruned by time partitions) and keeps the rows of the window asked for."""

    config_model: ClassVar[type[FileSourceConfig]] = FileSourceConfig

    def __init__(self, config: FileSourceConfig, *, timestamp_column: str | None, base_dir: Path | None = None,
                 **_: Any) -> None:
        self.config = config
        self.timestamp_column = timestamp_column
        self.remote = "://" in config.path
        p = Path(config.path).expanduser()
        self.pattern = p if self.remote or p.is_absolute() or base_dir is None else base_dir / p
        self._fs: Any = None
        self.files_read = 0  # files opened so far, to show partition and listing pruning at work
        self._skipped = Rejections(self.describe())

    def describe(self) -> str:
        return f"file:{self.config.path if self.remote else self.pattern}"

    def rejected(self) -> list[RejectedRecord]:
        return self._skipped.items()

    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                import fsspec  # type: ignore[import-untyped]
            except ImportError as exc:
                raise SourceQueryError("object-store paths need fsspec (pip install fsspec)") from exc
            options: dict[str, Any] = dict(self.config.storage_options)
            options.update({k: v.get_secret_value() for k, v in self.config.storage_secrets.items()})
            try:
                self._fs, _ = fsspec.core.url_to_fs(self.config.path, **options)
            except ImportError as exc:
                raise SourceQueryError(f"{self.describe()}: the storage backend is not installed: {exc}") from exc
            except ValueError as exc:
                raise SourceQueryError(f"{self.describe()}: {exc}") from exc
        return self._fs

    @property
    def _single_file(self) -> bool:
        """Whether the path names one file (not a folder or a glob): then an unreadable file is an error."""
        text = self.config.path
        if any(ch in text for ch in "*?["):
            return False
        if self.remote:
            return not text.endswith("/") and self.fs.isfile(str(type(self.fs)._strip_protocol(text)))
        return self.pattern.is_file()

    def _remote_files(self) -> list[Listed]:
        fs = self.fs
        path = str(type(fs)._strip_protocol(self.config.path))
        try:
            # listings with details: the modification times prune KServe objects without opening them
            if any(ch in path for ch in "*?["):
                found: dict[str, Any] = fs.glob(path, detail=True)
            elif fs.isdir(path):
                found = fs.find(path, detail=True)
            elif fs.exists(path):
                found = {path: fs.info(path)}
            else:
                raise SourceUnavailable(f"{self.describe()}: no such file or folder")
        except (OSError, TimeoutError) as exc:
            raise SourceUnavailable(f"{self.describe()}: {exc}") from exc
        return sorted((Listed(name, _info_time(info) if isinstance(info, dict) else None)
                       for name, info in found.items()
                       if not (isinstance(info, dict) and info.get("type") == "directory")),
                      key=lambda item: item.name)

    def files(self) -> list[Path]:
        pat = str(self.pattern)
        if any(ch in pat for ch in "*?["):
            found = [Path(f) for f in globlib.glob(pat, recursive=True)]
        elif self.pattern.is_dir():
            found = [f for f in self.pattern.rglob("*") if f.is_file()]
        elif self.pattern.exists():
            found = [self.pattern]
        else:
            raise SourceUnavailable(f"{self.pattern}: no such file or folder")
        return sorted(f for f in found if f.suffix.lower() in SUFFIXES)

    def _listing(self) -> list[Listed]:
        if self.remote:
            return [item for item in self._remote_files() if Path(item.name).suffix.lower() in SUFFIXES]
        if self.config.layout != "kserve":
            return [Listed(str(f)) for f in self.files()]
        out = []
        for f in self.files():
            try:
                out.append(Listed(str(f), datetime.fromtimestamp(f.stat().st_mtime, tz=UTC)))
            except OSError as exc:
                raise SourceUnavailable(f"{self.describe()}: {f}: {exc}") from exc
        return out

    def _pruned(self, listed: list[Listed], start: datetime | None, end: datetime | None) -> list[Listed]:
        if start is None or end is None or self.config.partitioning == "none":
            return listed
        keep = []
        for item in listed:
            span = partition_span(item.name)
            if span is None and self.config.partitioning == "hive":
                raise SourceQueryError(f"{self.describe()}: {item.name} is not under a dt=/hour= partition")
            if span is None or (span[0] < end and span[1] > start):
                keep.append(item)
        return keep

    def _load(self, name: str, columns: Sequence[str] | None) -> pd.DataFrame:
        """One file as a frame; InputError when its content cannot be read, SourceUnavailable on I/O."""
        self.files_read += 1
        try:
            if not self.remote:
                return read_table(name, fmt=self.config.format, columns=columns)
            kind = detect_format(Path(name), self.config.format)
            with self.fs.open(name, "rb") as fh:
                data = fh.read()
            return _read_bytes(data, kind, columns, name)
        except OSError as exc:
            raise SourceUnavailable(f"{self.describe()}: {name}: {exc}") from exc

    def _read(self, columns: Sequence[str], start: datetime | None, end: datetime | None) -> pd.DataFrame:
        self._skipped.clear()
        listed = self._pruned(self._listing(), start, end)
        if self.config.layout == "kserve":
            return self._read_kserve(listed, start, end)
        frames = []
        for item in listed:
            try:
                frames.append(self._load(item.name, columns))
            except InputError as exc:
                if self._single_file:
                    raise SourceQueryError(str(exc)) from exc
                self._skipped.add(item.name, str(exc))  # one unreadable file must not block every window
        if not frames:
            return pd.DataFrame(columns=list(columns))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        return self._read(columns, None, None)

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        if not self.timestamp_column:
            raise SourceQueryError("a windowed file source needs schema.timestamp_column")
        df = self._read(columns, start, end)
        if self.timestamp_column not in df.columns:
            if df.empty:
                return df
            raise SourceQueryError(f"{self.describe()}: no timestamp column {self.timestamp_column!r}")
        return rows_in_window(df, self.timestamp_column, start, end, self._skipped, self.describe())

    # -- KServe blob-storage logger layout ---------------------------------------------------------
    def _modified(self, item: Listed) -> datetime:
        if item.modified is not None:
            return item.modified
        try:
            when = _info_time(self.fs.info(item.name))  # a listing without times: ask for this object
        except OSError as exc:
            raise SourceUnavailable(f"{self.describe()}: {item.name}: {exc}") from exc
        if when is None:
            raise SourceQueryError(f"{self.describe()}: {item.name}: the store gives no modification time")
        return when

    def _payload(self, name: str) -> Any:
        """The raw inference payload inside one logged object (JSON record, or CSV/Parquet ``bytes``)."""
        from connectors.sources.inference import load_json

        kind = Path(name).suffix.lower().lstrip(".")
        if kind in ("json", "jsonl"):
            self.files_read += 1
            try:
                raw = Path(name).read_bytes() if not self.remote else self.fs.cat_file(name)
            except OSError as exc:
                raise SourceUnavailable(f"{self.describe()}: {name}: {exc}") from exc
            doc = load_json(raw)
            if isinstance(doc, dict) and not ({"instances", "inputs", "predictions", "outputs", "data"} & set(doc)):
                return _logged_bytes({k.lower(): v for k, v in doc.items()}, name)
            return doc
        frame = self._load(name, None)
        if frame.empty:
            raise InputError(f"{name}: empty object")
        return _logged_bytes({str(k).lower(): v for k, v in frame.iloc[0].to_dict().items()}, name)

    def _read_kserve(self, listed: list[Listed], start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """Join the halves of each (folder, id): the same id in two component folders is two events.

        With a window, a pair is opened only when its response object's modification time (the rows'
        timestamp) falls in it; the listing gives that time, so other objects are never read.
        """
        from connectors.sources.inference import join

        halves: dict[tuple[str, str], dict[str, Listed]] = {}
        for item in listed:
            folder, _, base = item.name.replace("\\", "/").rpartition("/")
            m = _KSERVE.match(base)
            if m:
                halves.setdefault((folder, m.group("id")), {})[m.group("kind")] = item
        rows: list[dict[str, Any]] = []
        ts_col = self.timestamp_column or "timestamp"
        for (folder, event_id), pair in sorted(halves.items()):
            if "request" not in pair or "response" not in pair:
                continue  # a lone half: the other may still be on its way, or was never logged
            when = self._modified(pair["response"])
            if start is not None and end is not None and not (start <= when < end):
                continue
            try:
                joined = join(event_id, self._payload(pair["request"].name), self._payload(pair["response"].name),
                              feature_names=self.config.feature_names,
                              prediction_column=self.config.prediction_column)
            except InputError as exc:
                self._skipped.add(f"{folder}/{event_id}", str(exc))
                continue
            for r in joined:
                r[ts_col] = when
            rows.extend(joined)
        return pd.DataFrame.from_records(rows)

    def close(self) -> None:
        return None


def _logged_bytes(record: dict[str, Any], name: str) -> Any:
    """The payload of a KServe log record: ``bytes`` is base64 text (JSON/CSV) or raw bytes (Parquet)."""
    from connectors.sources.inference import load_json

    raw = record.get("bytes")
    if raw is None:
        raise InputError(f"{name}: a logged record without `bytes`")
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raw = str(raw).encode()
    try:
        return load_json(raw)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from exc


def _read_bytes(data: bytes, kind: str, columns: Sequence[str] | None, name: str) -> pd.DataFrame:
    """The same readers as ``read_table``, on the bytes of an object fetched from a store."""
    check_width(data, kind, name)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            table_ = pq.read_table(io.BytesIO(data))
            df = table_.to_pandas()
        elif kind == "csv":
            df = pd.read_csv(io.BytesIO(data), low_memory=False)
        else:
            df = pd.read_json(io.BytesIO(data), lines=True, dtype=False, convert_dates=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{name}: cannot read as {kind}: {first}") from exc
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return df
