"""Frozen reference windows: written once with their digest, read back verified, refused when altered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from config.errors import SourceQueryError
from config.model import FileSourceConfig, SnapshotSourceConfig
from connectors.sources.files import FileSource
from connectors.sources.snapshot import SnapshotSource, file_digest, freeze_window

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _logged(tmp: Path) -> FileSource:
    frame = pd.DataFrame({"ts": [T0 + timedelta(minutes=20 * i) for i in range(9)], "x": range(9)})
    frame.to_parquet(tmp / "log.parquet")
    return FileSource(FileSourceConfig(path=str(tmp / "log.parquet")), timestamp_column="ts")


def test_a_frozen_window_reads_back_with_the_digest_in_its_description(tmp_path: Path) -> None:
    snap = freeze_window(_logged(tmp_path), T0, T0 + timedelta(hours=1), columns=["ts", "x"],
                         path=tmp_path / "ref" / "w.parquet", system_id="scoring")
    assert snap.rows == 3 and snap.digest == file_digest(snap.path)
    meta = json.loads(Path(str(snap.path) + ".json").read_text())
    assert meta["digest"] == snap.digest and meta["window"]["start"] == T0.isoformat()
    src = SnapshotSource(SnapshotSourceConfig(path=str(snap.path)), timestamp_column="ts")
    assert src.read_all(columns=["x"])["x"].tolist() == [0, 1, 2]
    assert src.describe().endswith(f"@sha256:{snap.digest}")
    pinned = SnapshotSource(SnapshotSourceConfig(path=str(snap.path), digest=snap.digest), timestamp_column="ts")
    assert len(pinned.read_window(T0, T0 + timedelta(minutes=30), columns=["ts", "x"])) == 2


def test_an_altered_snapshot_is_refused(tmp_path: Path) -> None:
    snap = freeze_window(_logged(tmp_path), T0, T0 + timedelta(hours=1), columns=["ts", "x"],
                         path=tmp_path / "w.parquet")
    pd.DataFrame({"ts": [T0], "x": [99]}).to_parquet(snap.path)  # someone "fixes" the reference
    with pytest.raises(SourceQueryError, match="changed"):
        SnapshotSource(SnapshotSourceConfig(path=str(snap.path), digest=snap.digest),
                       timestamp_column="ts").read_all(columns=["x"])
    # the sidecar names the original digest too, so dropping the pin does not help
    with pytest.raises(SourceQueryError, match="changed"):
        SnapshotSource(SnapshotSourceConfig(path=str(snap.path)), timestamp_column="ts").read_all(columns=["x"])
