"""Checks of a configuration against the data it names, run while it is loaded (before anything starts).

The loader (``config/``) knows no file formats; the agent hands it :func:`reference_columns`, so
``config validate``, ``check`` and ``run`` report a declared feature that the reference lacks, along
with every other configuration problem, instead of that feature silently never being judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.errors import InputError
from config.loader import resolve_path
from config.model import FileSourceConfig, SnapshotSourceConfig

#: Enough files of a partitioned reference to see its columns without reading a whole folder tree.
MAX_FILES_LOOKED_AT = 20


def reference_columns(ref: FileSourceConfig | SnapshotSourceConfig, base_dir: Path | None) -> Sequence[str] | None:
    """The column names of a local file reference (None for object storage and KServe logs).

    Only the header or Parquet schema is read. Raises an AimsError when the files cannot be listed or read.
    """
    from connectors.sources.files import FileSource, detect_format

    if "://" in ref.path:
        return None
    if isinstance(ref, SnapshotSourceConfig):
        return _columns(resolve_path(ref.path, base_dir), "parquet")
    if ref.layout == "kserve":
        return None
    files = FileSource(ref, timestamp_column=None, base_dir=base_dir).files()
    if not files:
        raise InputError(f"{ref.path}: matches no Parquet, CSV or JSON Lines file")
    seen: dict[str, None] = {}
    for path in files[:MAX_FILES_LOOKED_AT]:
        seen.update(dict.fromkeys(_columns(path, detect_format(path, ref.format))))
    return list(seen)


def _columns(path: Path, fmt: str) -> list[str]:
    import pandas as pd

    from connectors.sources.files import check_width, read_table

    check_width(path, fmt, path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if fmt == "csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the file is empty") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as {fmt}: {first}") from exc
    return [str(c) for c in read_table(path, fmt=fmt).columns]


class IsolatedColumns:
    """:func:`reference_columns` run in one short-lived process (spawned on first use, stopped on exit).

    Reading a header needs pandas or pyarrow; the service validates its config at start with this lookup,
    so the resident process never imports them (see ``agent.worker``).
    """

    def __init__(self) -> None:
        self._pool: Any = None

    def __call__(self, ref: FileSourceConfig | SnapshotSourceConfig, base_dir: Path | None) -> Sequence[str] | None:
        if "://" in ref.path or (isinstance(ref, FileSourceConfig) and ref.layout == "kserve"):
            return None  # nothing to read here: no process to start
        if self._pool is None:
            import os
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            from agent.worker import watch_parent

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                             initializer=watch_parent, initargs=(os.getpid(),))
        return self._pool.submit(reference_columns, ref, base_dir).result()  # type: ignore[no-any-return]

    def __enter__(self) -> IsolatedColumns:
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
