"""File source: Parquet, CSV and JSON Lines, from one file, a folder or a glob.

``read_table`` is also what ``aims-agent compare`` uses, so every file path in the product reads data
the same way and fails with the same one-line reasons.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pandas as pd

from config.errors import InputError, SourceQueryError, SourceUnavailable
from config.model import FileSourceConfig

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl"}


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown file type {path.suffix!r} (use .parquet, .csv or .jsonl)")
    return fmt


def read_table(path: str | Path, *, fmt: str = "auto", columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read one Parquet/CSV/JSON Lines file; any failure becomes an InputError with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file")
    kind = detect_format(p, fmt)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            wanted = None
            if columns is not None:
                present = set(pq.read_schema(p).names)
                wanted = [c for c in columns if c in present]
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


class FileSource:
    """Reads every matching file and keeps the rows of the window asked for."""

    config_model: ClassVar[type[FileSourceConfig]] = FileSourceConfig

    def __init__(self, config: FileSourceConfig, *, timestamp_column: str | None, base_dir: Path | None = None):
        self.config = config
        self.timestamp_column = timestamp_column
        p = Path(config.path).expanduser()
        self.pattern = p if p.is_absolute() or base_dir is None else base_dir / p

    def describe(self) -> str:
        return f"file:{self.pattern}"

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

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        frames = []
        for f in self.files():
            try:
                frames.append(read_table(f, fmt=self.config.format, columns=columns))
            except InputError as exc:
                raise SourceQueryError(str(exc)) from exc
        if not frames:
            return pd.DataFrame(columns=list(columns))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        if not self.timestamp_column:
            raise SourceQueryError("a windowed file source needs schema.timestamp_column")
        df = self.read_all(columns=columns)
        if self.timestamp_column not in df.columns:
            if df.empty:
                return df
            raise SourceQueryError(f"{self.describe()}: no timestamp column {self.timestamp_column!r}")
        ts = to_utc(df[self.timestamp_column])
        mask = (ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))
        return df.loc[mask.to_numpy()].reset_index(drop=True)

    def close(self) -> None:
        return None
