"""Frozen reference windows: ``freeze_window`` writes one, the ``snapshot`` source reads it back verified.

A snapshot is a Parquet file of the rows of one past window, plus a sidecar ``<file>.json`` that
records its SHA-256, the window, the source it came from and the row count. The ``snapshot`` source
refuses a file whose digest differs from the configured one (or, when none is configured, from its
sidecar), and its ``describe()`` carries the digest, so evidence names exactly which data the current
window was compared with.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from config.errors import InputError, SourceQueryError, SourceUnavailable
from config.model import SnapshotSourceConfig
from connectors.base import RejectedRecord, Rejections, Source
from connectors.sources.files import read_table, rows_in_window


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    path: Path
    digest: str
    rows: int


def freeze_window(source: Source, start: datetime, end: datetime, *, columns: Sequence[str], path: str | Path,
                  system_id: str | None = None) -> Snapshot:
    """Read ``[start, end)`` from ``source`` and write it to ``path`` (Parquet) with its digest sidecar.

    A frozen snapshot is never overwritten (``InputError`` if ``path`` exists) and never published half
    written: both files are written under temporary names, the digest is taken from the finished Parquet
    file, the sidecar is published first and the data last, so a reader sees either no snapshot or one
    whose sidecar names its digest. An empty window is refused: it cannot serve as reference data.
    """
    out = Path(path)
    if out.exists():
        raise InputError(f"{out} exists: a frozen snapshot is never overwritten (choose another path)")
    frame = source.read_window(start, end, columns=columns)
    if frame.empty:
        raise InputError(f"{source.describe()}: no rows in [{start.isoformat()}, {end.isoformat()}) to freeze")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    side = Path(str(out) + ".json")
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        digest = file_digest(tmp)
        meta = {"digest": digest, "rows": len(frame), "columns": [str(c) for c in frame.columns],
                "window": {"start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat()},
                "source": source.describe(), "system_id": system_id, "frozen_at": datetime.now(UTC).isoformat()}
        side_tmp.write_text(json.dumps(meta, indent=2))
        side_tmp.replace(side)
        try:
            os.link(tmp, out)  # fails rather than replace a snapshot frozen meanwhile
        except FileExistsError as exc:
            raise InputError(f"{out} exists: a frozen snapshot is never overwritten (choose another path)") from exc
        except OSError:  # a file system without hard links: the existence check above has to do
            tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
    return Snapshot(out, digest, len(frame))


class SnapshotSource:
    config_model: ClassVar[type[SnapshotSourceConfig]] = SnapshotSourceConfig

    def __init__(self, config: SnapshotSourceConfig, *, timestamp_column: str | None, base_dir: Path | None = None,
                 **_: Any) -> None:
        self.config = config
        self.timestamp_column = timestamp_column
        p = Path(config.path).expanduser()
        self.path = p if p.is_absolute() or base_dir is None else base_dir / p
        self.digest: str | None = None
        self._skipped = Rejections(f"snapshot:{self.path}")

    def expected_digest(self) -> str:
        if self.config.digest:
            return self.config.digest
        side = Path(str(self.path) + ".json")
        try:
            return str(json.loads(side.read_text())["digest"])
        except (OSError, ValueError, KeyError) as exc:
            raise SourceQueryError(f"{self.path}: no digest configured and no readable sidecar {side.name}") from exc

    def _verified(self, columns: Sequence[str]) -> pd.DataFrame:
        if not self.path.exists():
            raise SourceUnavailable(f"{self.path}: no such snapshot")
        want = self.expected_digest()
        have = file_digest(self.path)
        if have != want:
            raise SourceQueryError(f"{self.path}: digest {have[:12]} is not the expected {want[:12]}: "
                                   "the snapshot was changed")
        self.digest = have
        try:
            return read_table(self.path, fmt="parquet", columns=columns)
        except InputError as exc:
            raise SourceQueryError(str(exc)) from exc

    def describe(self) -> str:
        return f"snapshot:{self.path}@sha256:{self.digest or self.expected_digest()}"

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        return self._verified(columns)

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        df = self._verified(columns)
        if not self.timestamp_column or self.timestamp_column not in df.columns:
            raise SourceQueryError(f"{self.path}: no timestamp column {self.timestamp_column!r}")
        self._skipped.clear()
        return rows_in_window(df, self.timestamp_column, start, end, self._skipped, self.describe())

    def rejected(self) -> list[RejectedRecord]:
        return self._skipped.items()

    def close(self) -> None:
        return None
