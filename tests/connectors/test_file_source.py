"""File source: hive partitions pruned by the window, globs, fsspec URLs, KServe's blob layout, no coercion."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from config.errors import SourceQueryError
from config.model import FileSourceConfig
from connectors.sources.files import FileSource, partition_span

T0 = datetime(2026, 4, 2, tzinfo=UTC)


def _frame(start: datetime, n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"ts": [start + timedelta(minutes=10 * i) for i in range(n)],
                         "x": [float(i) for i in range(n)], "colour": ["red"] * n})


def _partitioned(root: Path) -> None:
    for day in range(3):
        for hour in (0, 1):
            start = T0 + timedelta(days=day, hours=hour)
            d = root / f"dt={start:%Y-%m-%d}" / f"hour={start:%H}"
            d.mkdir(parents=True)
            _frame(start).to_parquet(d / "part-0.parquet")


def test_hive_partitions_outside_the_window_are_never_opened(tmp_path: Path) -> None:
    _partitioned(tmp_path / "logs")
    # a broken file in another day's partition: reading it would fail the window
    (tmp_path / "logs" / f"dt={T0 + timedelta(days=2):%Y-%m-%d}" / "hour=00" / "part-1.parquet").write_bytes(b"junk")
    src = FileSource(FileSourceConfig(path=str(tmp_path / "logs")), timestamp_column="ts")
    got = src.read_window(T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1), columns=["ts", "x"])
    assert len(got) == 6
    assert src.files_read == 1


def test_partition_spans_of_day_hour_and_year_month_layouts() -> None:
    assert partition_span("s3://b/p/dt=2026-04-02/hour=05/a.parquet") == (
        datetime(2026, 4, 2, 5, tzinfo=UTC), datetime(2026, 4, 2, 6, tzinfo=UTC))
    assert partition_span("/x/year=2026/month=12/f.csv") == (
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert partition_span("/x/plain/f.csv") is None


def test_required_hive_layout_rejects_an_unpartitioned_file(tmp_path: Path) -> None:
    _partitioned(tmp_path / "logs")
    _frame(T0).to_parquet(tmp_path / "logs" / "stray.parquet")
    src = FileSource(FileSourceConfig(path=str(tmp_path / "logs"), partitioning="hive"), timestamp_column="ts")
    with pytest.raises(SourceQueryError, match="not under"):
        src.read_window(T0, T0 + timedelta(hours=1), columns=["ts"])


def test_glob_over_csv_and_jsonl_files(tmp_path: Path) -> None:
    _frame(T0).to_csv(tmp_path / "a.csv", index=False)
    _frame(T0 + timedelta(hours=1)).to_json(tmp_path / "b.jsonl", orient="records", lines=True, date_format="iso")
    src = FileSource(FileSourceConfig(path=str(tmp_path / "*.*")), timestamp_column="ts")
    assert len(src.read_window(T0, T0 + timedelta(hours=2), columns=["ts", "x"])) == 12


def test_object_store_urls_go_through_fsspec(tmp_path: Path) -> None:
    _partitioned(tmp_path / "bucket")
    src = FileSource(FileSourceConfig(path=f"file://{tmp_path / 'bucket'}"), timestamp_column="ts")
    got = src.read_window(T0, T0 + timedelta(hours=2), columns=["ts", "x"])
    assert len(got) == 12
    assert src.files_read == 2
    assert src.describe().startswith("file:file://")


def test_an_unknown_storage_backend_is_a_config_error(tmp_path: Path) -> None:
    src = FileSource(FileSourceConfig(path="nosuchproto://bucket/x"), timestamp_column="ts")
    with pytest.raises(SourceQueryError):
        src.read_all(columns=["x"])


def test_a_text_cell_in_a_numeric_csv_column_is_kept_not_coerced(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("ts,x\n2026-04-02T00:00:00Z,1.5\n2026-04-02T00:10:00Z,oops\n")
    src = FileSource(FileSourceConfig(path=str(tmp_path / "a.csv")), timestamp_column="ts")
    got = src.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])
    assert "oops" in got["x"].tolist()


def _kserve_record(event_id: str, kind: str, payload: dict[str, object]) -> dict[str, object]:
    return {"url": "http://localhost:9081/", "bytes": base64.b64encode(json.dumps(payload).encode()).decode(),
            "contentType": "application/json", "reqType": f"org.kubeflow.serving.inference.{kind}", "id": event_id,
            "sourceUri": "http://localhost:9081/", "inferenceService": "scorer", "namespace": "ml",
            "component": "predictor", "endpoint": "", "metadata": "{}", "annotations": "{}", "certName": "",
            "tlsSkipVerify": False}


@pytest.mark.parametrize("ext", ["json", "csv", "parquet"])
def test_kserve_blob_layout_joins_request_and_response_on_id(tmp_path: Path, ext: str) -> None:
    base = tmp_path / "logs" / "ml" / "scorer" / "predictor" / "2026" / "04"
    base.mkdir(parents=True)
    pairs = {
        "e1": ({"instances": [[1.0, "red"], [2.0, "blue"]]}, {"predictions": [1, 0]}),
        "e2": ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [3.0]},
                           {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["green"]}]},
               {"outputs": [{"name": "out", "shape": [1], "datatype": "INT64", "data": [1]}]}),
    }
    for eid, (req, resp) in pairs.items():
        for kind, payload in (("request", req), ("response", resp)):
            rec = _kserve_record(eid, kind, payload)
            path = base / f"{eid}-{kind}.{ext}"
            if ext == "json":
                path.write_text(json.dumps(rec))
            elif ext == "csv":
                pd.DataFrame([rec]).to_csv(path, index=False)
            else:
                rec["bytes"] = base64.b64decode(str(rec["bytes"]))
                pd.DataFrame([rec]).to_parquet(path)
            os.utime(path, (T0.timestamp() + 60, T0.timestamp() + 60))
    # a lone request: its response was never logged
    (base / f"e3-request.{ext}").write_bytes((base / f"e1-request.{ext}").read_bytes())
    cfg = FileSourceConfig(path=str(tmp_path / "logs"), layout="kserve", feature_names=["x", "colour"],
                           prediction_column="label_pred")
    got = FileSource(cfg, timestamp_column="ts").read_window(T0, T0 + timedelta(hours=1),
                                                             columns=["id", "x", "colour", "label_pred", "ts"])
    got = got.sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == ["e1/0", "e1/1", "e2"]
    assert got["x"].tolist() == [1.0, 2.0, 3.0]
    assert got["colour"].tolist() == ["red", "blue", "green"]
    assert got["label_pred"].tolist() == [1, 0, 1]
