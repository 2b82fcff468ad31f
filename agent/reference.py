"""Naming and freezing reference data, so evidence says exactly which data a window was compared with.

``read_reference`` reads a reference source and names what it read: a snapshot as
``snapshot:PATH@sha256:HEX`` (verified against its digest as it is read), a local file as
``file:PATH@sha256:HEX`` (the file's SHA-256; for a folder or a glob, the SHA-256 of a ``sha256sum``-style
listing of its files, ``HEX  NAME`` per line in name order, and the number of files), any other source
by its credential-free description. ``freeze_reference`` writes a past window of a system's source as a
snapshot and records it in the ledger (``reference_frozen``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from agent.evidence import Ledger, iso
from agent.store import Store
from config.errors import InputError, SourceUnavailable
from connectors.base import Source
from connectors.sources.files import FileSource
from connectors.sources.snapshot import file_digest, freeze_window


def _local_files(source: Source) -> list[Path]:
    if isinstance(source, FileSource) and not source.remote:
        return source.files()
    return []


def _state(files: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def read_reference(source: Source, *, columns: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """Every row of a reference source, and its name for the evidence (see the module docstring)."""
    files = _local_files(source)
    before = _state(files)
    frame = source.read_all(columns=columns)
    if not files:
        return frame, source.describe()  # a snapshot's description carries the digest it was verified with
    try:
        if _state(_local_files(source)) != before:
            raise SourceUnavailable(f"{source.describe()}: the reference files changed while they were read")
        digests = [(file_digest(f), f) for f in files]
    except OSError as exc:
        raise SourceUnavailable(f"{source.describe()}: cannot hash the reference files: {exc}") from exc
    if len(digests) == 1:
        return frame, f"file:{digests[0][1]}@sha256:{digests[0][0]}"
    listing = "".join(f"{d}  {f}\n" for d, f in digests).encode()
    return frame, f"{source.describe()}@sha256:{hashlib.sha256(listing).hexdigest()} ({len(digests)} files)"


@dataclass(frozen=True)
class FrozenReference:
    name: str  # snapshot:PATH@sha256:HEX, as check runs against it will record it
    path: Path
    digest: str
    rows: int
    record_seq: int


def freeze_reference(store: Store, ledger: Ledger, source: Source, *, system_id: str, columns: Sequence[str],
                     since: datetime, until: datetime, out: Path, now: datetime) -> FrozenReference:
    """Freeze ``[since, until)`` of ``source`` as a snapshot at ``out`` and record it in the ledger."""
    if until <= since:
        raise InputError(f"--until {iso(until)} is not after --since {iso(since)}")
    snap = freeze_window(source, since, until, columns=columns, path=out, system_id=system_id)
    path = snap.path.resolve()
    name = f"snapshot:{path}@sha256:{snap.digest}"
    with store.transaction() as s:
        record = ledger.append(s, "reference_frozen", {
            "name": name, "path": str(path), "sha256": snap.digest, "rows": snap.rows, "columns": list(columns),
            "window": {"start": since, "end": until}, "source": source.describe(),
            "sidecar": str(path) + ".json",
        }, system_id=system_id, now=now)
    return FrozenReference(name, path, snap.digest, snap.rows, record.seq)
