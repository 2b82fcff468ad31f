"""KServe blob layout: halves are joined per (folder, id), and only the window's pairs are ever opened.

Every object KServe's logger ever wrote stays under the prefix; a window must not read them all. The
listing's modification times (the rows' timestamps) select the pairs before any object is opened,
on a local folder and through fsspec (``file://``) alike.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config.model import FileSourceConfig
from connectors.sources.files import FileSource
from tests.conftest import T0
from tests.connectors.test_file_source import _kserve_record


def _pair(folder: Path, eid: str, x: float, pred: int, when: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, payload in (("request", {"instances": [[x]]}), ("response", {"predictions": [pred]})):
        path = folder / f"{eid}-{kind}.json"
        path.write_text(json.dumps(_kserve_record(eid, kind, payload)))
        os.utime(path, (when, when))


def _source(root: Path, scheme: str) -> FileSource:
    path = f"file://{root}" if scheme == "file://" else str(root)
    return FileSource(FileSourceConfig(path=path, layout="kserve", feature_names=["x"]), timestamp_column="ts")


@pytest.fixture(params=["local", "file://"])
def scheme(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_the_same_id_in_two_component_folders_is_two_events(tmp_path: Path, scheme: str) -> None:
    root = tmp_path / "logs" / "ml" / "scorer"
    at = T0.timestamp() + 120
    # the transformer and the predictor of one InferenceService log the same incoming ce-id
    _pair(root / "transformer", "req-7", 9.0, 0, at)
    _pair(root / "predictor", "req-7", 1.0, 1, at)
    rows = _source(tmp_path / "logs", scheme).read_window(T0, T0 + timedelta(hours=1),
                                                          columns=["id", "x", "prediction", "ts"])
    assert sorted(zip(rows["x"], rows["prediction"], strict=True)) == [(1.0, 1), (9.0, 0)]


def test_a_window_opens_only_the_pairs_whose_response_falls_in_it(tmp_path: Path, scheme: str) -> None:
    root = tmp_path / "logs" / "ml" / "scorer" / "predictor"
    for day in range(1, 31):  # a month of history before the window, and a pair after it
        _pair(root, f"old-{day}", 0.0, 0, (T0 - timedelta(days=day)).timestamp())
    _pair(root, "later-1", 0.0, 0, (T0 + timedelta(hours=3)).timestamp())
    _pair(root, "now-1", 1.0, 1, (T0 + timedelta(minutes=5)).timestamp())
    _pair(root, "now-2", 2.0, 1, (T0 + timedelta(minutes=59, seconds=59)).timestamp())
    _pair(root, "edge-1", 3.0, 1, (T0 + timedelta(hours=1)).timestamp())  # the next window's (half-open)
    src = _source(tmp_path / "logs", scheme)
    rows = src.read_window(T0, T0 + timedelta(hours=1), columns=["id", "x", "ts"])
    assert sorted(rows["id"]) == ["now-1", "now-2"]
    assert src.files_read == 4  # two pairs of two objects; the other 33 pairs were never opened
    assert str(rows["ts"].min()) == str(T0 + timedelta(minutes=5))
    nxt = src.read_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), columns=["id"])
    assert nxt["id"].tolist() == ["edge-1"]
