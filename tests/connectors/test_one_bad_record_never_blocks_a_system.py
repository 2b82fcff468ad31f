"""A record a source cannot turn into rows is skipped and judged as data quality; the window goes on.

Before, one KServe pair with 2 instances and 1 prediction (each half valid, so each acknowledged 202)
failed its whole window with SourceQueryError on every tick: the watermark never moved again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent.ingest import create_router
from agent.runner import Agent, RunOutcome
from agent.schema import MetricValue
from config.loader import load_config
from config.model import CloudEventsSourceConfig, FileSourceConfig, SnapshotSourceConfig
from connectors.sources.cloudevents import CloudEventsSource
from connectors.sources.files import FileSource
from connectors.sources.snapshot import SnapshotSource, freeze_window
from tests.conftest import T0, Scenario, make_rows
from tests.connectors.test_file_source import _kserve_record
from tests.connectors.test_ingest_cloudevents import INGEST, kserve, post, post_pairs, seldon


@pytest.fixture
def ingesting(scenario: Scenario) -> Iterator[tuple[Agent, TestClient]]:
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest"]}]
    system = cfg["systems"][0]
    system["source"] = {"type": "cloudevents", "system": "scoring", "prediction_column": "score"}
    system["checks"]["fairness"]["enabled"] = False
    system["window"]["min_rows"] = 50
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    app = FastAPI()
    app.include_router(create_router(agent))
    yield agent, TestClient(app, headers={"Authorization": f"Bearer {INGEST}"})
    agent.close()


def _quality(outcome: RunOutcome) -> Any:
    return next(v for v in outcome.verdicts if v.check == "data_quality")


def test_a_pair_that_does_not_join_is_a_finding_and_later_windows_are_judged(
        ingesting: tuple[Agent, TestClient], scenario: Scenario) -> None:
    agent, client = ingesting
    post_pairs(client, make_rows(scenario.rng, 200, T0), T0, "a")
    post_pairs(client, make_rows(scenario.rng, 200, T0 + timedelta(hours=1)), T0 + timedelta(hours=1), "b")
    inst = {"x1": 0.1, "x2": 1.0, "colour": "red", "group": "A"}
    # each half is a valid payload on its own, so both are acknowledged...
    assert post(client, kserve("request", "bad-pair-1", {"instances": [inst, inst]}, T0 + timedelta(minutes=30))
                ).status_code == 202
    assert post(client, kserve("response", "bad-pair-1", {"predictions": [0.4]}, T0 + timedelta(minutes=30))
                ).status_code == 202
    # ...but together they are not rows: the pair is skipped, named, and the window is still judged
    outcomes = agent.run_system("scoring", T0 + timedelta(hours=1, minutes=1))
    assert [(o.window_start, o.status != "failed", o.rows) for o in outcomes] == [(T0, True, 200)], \
        [o.error for o in outcomes]
    first = _quality(outcomes[0])
    assert first.state == "breach"
    assert "bad-pair-1" in first.summary and "2 instances but 1 predictions" in first.summary
    dq = outcomes[0].results["data_quality"]
    assert dq["rejected"] == [{"record": "event bad-pair-1", "reason": "event bad-pair-1: 2 instances but "
                               "1 predictions", "count": 1}]
    assert {"kind": "bad_record", "count": 1} in [{"kind": f["kind"], "count": f["count"]} for f in dq["findings"]]
    with agent.store.session() as s:
        exported = {m.labels: m.value for m in s.query(MetricValue).filter_by(family="data_quality_findings")}
    assert exported['{"kind":"bad_record"}'] == 1.0
    # the watermark moved past it: the next window is judged on its own, and clean
    later = agent.run_system("scoring", T0 + timedelta(hours=2, minutes=1))
    assert [(o.window_start, o.rows) for o in later] == [(T0 + timedelta(hours=1), 200)]
    assert _quality(later[0]).state == "ok"
    assert agent.watermark(agent.cfg.systems[0]) == T0 + timedelta(hours=2)


def test_a_feedback_that_does_not_fit_its_event_is_skipped_alone(ingesting: tuple[Agent, TestClient]) -> None:
    agent, client = ingesting
    req = {"data": {"names": ["x1", "colour"], "ndarray": [[0.2, "red"], [0.3, "blue"]]}}
    resp = {"data": {"names": ["p"], "ndarray": [[0.8], [0.1]]}}
    assert post(client, seldon("request", "s1", req, T0)).status_code == 202
    assert post(client, seldon("response", "s1", resp, T0)).status_code == 202
    fb = {"truth": {"data": {"ndarray": [[1]]}}}  # one truth for two instances
    assert post(client, seldon("feedback", "fb-1", fb, T0, requestid="s1")).status_code == 202
    src = CloudEventsSource(CloudEventsSourceConfig(system="scoring", prediction_column="score"),
                            timestamp_column="ts", store=agent.store)
    rows = src.read_window(T0, T0 + timedelta(hours=1), columns=["id", "x1", "score", "label"])
    assert rows["id"].tolist() == ["s1/0", "s1/1"] and "label" not in rows.columns
    assert [(r.record, r.reason) for r in src.rejected()] == [
        ("feedback of event s1", "1 truth value(s) for 2 instance(s)")]


@pytest.mark.parametrize("payload", [
    {"inputs": [{"name": "x1", "shape": [None], "datatype": "FP64", "data": [1.0]}]},
    {"inputs": [{"name": "x1", "datatype": "FP64", "data": 5}]},
    {"data": {"tensor": [1, 2]}},
])
def test_a_payload_of_the_right_keys_but_wrong_shapes_is_a_400(ingesting: tuple[Agent, TestClient],
                                                               payload: dict[str, Any]) -> None:
    _, client = ingesting
    r = post(client, kserve("request", "shape-1", payload, T0))
    assert r.status_code == 400 and "malformed request payload" in r.json()["detail"]


def _write_kserve(folder: Path, eid: str, req: dict[str, Any], resp: dict[str, Any], when: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, payload in (("request", req), ("response", resp)):
        path = folder / f"{eid}-{kind}.json"
        path.write_text(json.dumps(_kserve_record(eid, kind, payload)))
        os.utime(path, (when, when))


def test_a_kserve_blob_pair_that_does_not_join_is_skipped_alone(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "ml" / "scorer" / "predictor"
    at = T0.timestamp() + 60
    _write_kserve(folder, "ok-1", {"instances": [[1.0], [2.0]]}, {"predictions": [1, 0]}, at)
    _write_kserve(folder, "bad-1", {"instances": [[1.0], [2.0]]}, {"predictions": [1]}, at)
    (folder / "junk-1-request.json").write_text("{not json")
    (folder / "junk-1-response.json").write_text(json.dumps(_kserve_record("junk-1", "response",
                                                                           {"predictions": [1]})))
    for name in ("junk-1-request.json", "junk-1-response.json"):
        os.utime(folder / name, (at, at))
    src = FileSource(FileSourceConfig(path=str(tmp_path / "logs"), layout="kserve", feature_names=["x"]),
                     timestamp_column="ts")
    rows = src.read_window(T0, T0 + timedelta(hours=1), columns=["id", "x", "prediction", "ts"])
    assert sorted(rows["id"]) == ["ok-1/0", "ok-1/1"]
    skipped = {r.record.rsplit("/", 1)[-1]: r.reason for r in src.rejected()}
    assert set(skipped) == {"bad-1", "junk-1"}
    assert "2 instances but 1 predictions" in skipped["bad-1"] and "not JSON" in skipped["junk-1"]


def test_an_unreadable_file_in_a_folder_is_skipped_but_a_single_configured_file_fails(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    frame = pd.DataFrame({"ts": [T0 + timedelta(minutes=i) for i in range(5)], "x": range(5)})
    frame.to_parquet(logs / "a.parquet")
    (logs / "b.parquet").write_bytes(b"truncated upload")
    src = FileSource(FileSourceConfig(path=str(logs)), timestamp_column="ts")
    assert len(src.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])) == 5
    assert [Path(r.record).name for r in src.rejected()] == ["b.parquet"]
    from config.errors import SourceQueryError

    single = FileSource(FileSourceConfig(path=str(logs / "b.parquet")), timestamp_column="ts")
    with pytest.raises(SourceQueryError, match=r"b\.parquet"):
        single.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])


def test_rows_whose_timestamp_is_not_a_time_are_reported_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("ts,x\n2026-01-05T00:00:00Z,1\nyesterday,2\n,3\n2026-01-05T00:30:00Z,4\n")
    src = FileSource(FileSourceConfig(path=str(tmp_path / "a.csv")), timestamp_column="ts")
    rows = src.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])
    assert rows["x"].tolist() == [1, 4]
    [bad] = src.rejected()
    assert bad.count == 2 and "'yesterday'" in bad.reason
    # the snapshot source filters its window the same way
    snap = freeze_window(src, T0, T0 + timedelta(hours=1), columns=["ts", "x"], path=tmp_path / "s.parquet")
    assert snap.rows == 2
    ref = SnapshotSource(SnapshotSourceConfig(path=str(tmp_path / "s.parquet")), timestamp_column="ts")
    assert len(ref.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])) == 2 and ref.rejected() == []
