"""KServe and Seldon inference-logger CloudEvents: stored before the 2xx, joined on ce-id, read as a source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent.ingest import MAX_EVENT_BYTES, create_router
from agent.runner import Agent
from agent.schema import InferenceEvent
from config.loader import load_config
from config.model import CloudEventsSourceConfig
from connectors.sources.cloudevents import CloudEventsSource
from tests.conftest import Scenario

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
INGEST = "ingest-token-value"
READER = "read-token-value"


@pytest.fixture
def agent(scenario: Scenario) -> Iterator[Agent]:
    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest"]},
                              {"name": "viewer", "value": READER, "scopes": ["read"]}]
    scenario.rewrite(cfg)
    a = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    yield a
    a.close()


@pytest.fixture
def client(agent: Agent) -> TestClient:
    app = FastAPI()
    app.include_router(create_router(agent))
    return TestClient(app, headers={"Authorization": f"Bearer {INGEST}"})


def kserve(kind: str, event_id: str, payload: dict[str, Any], at: datetime) -> tuple[dict[str, str], bytes]:
    """The header set KServe's logger agent sends (monitoring-landscape.md section 3), via the SDK."""
    ev = CloudEvent(attributes={
        "specversion": "1.0", "type": f"org.kubeflow.serving.inference.{kind}", "id": event_id,
        "source": "http://localhost:9081/", "time": at, "inferenceservicename": "scorer", "namespace": "ml",
        "component": "predictor", "endpoint": "", "metadata": json.dumps({"X-Request-Id": ["r1"]}),
        "recordedtime": at.isoformat(), "datacontenttype": "application/json",
    }, data=json.dumps(payload).encode())
    msg = to_binary(ev, JSONFormat())
    return dict(msg.headers), msg.body


def seldon(kind: str, event_id: str, payload: dict[str, Any], at: datetime, **ext: str) -> tuple[dict[str, str],
                                                                                                  bytes]:
    ce_type = "io.seldon.serving.feedback" if kind == "feedback" else f"io.seldon.serving.inference.{kind}"
    ev = CloudEvent(attributes={
        "specversion": "1.0", "type": ce_type, "id": event_id, "source": "seldon-executor", "time": at,
        "modelid": "classifier", "inferenceservicename": "scorer", "namespace": "ml", "endpoint": "default",
        "protocol": "seldon", "datacontenttype": "application/json", **ext}, data=json.dumps(payload).encode())
    msg = to_binary(ev, JSONFormat())
    return dict(msg.headers), msg.body


def post(client: TestClient, msg: tuple[dict[str, str], bytes], path: str = "/api/v1/ingest/scoring/cloudevents",
         **kw: Any) -> Any:
    return client.post(path, headers=msg[0], content=msg[1], **kw)


def post_pairs(client: TestClient, frame: Any, start: datetime, prefix: str) -> None:
    """KServe request/response pairs of 50 instances each, ten minutes apart from ``start``."""
    for i in range(0, len(frame), 50):
        part = frame.iloc[i:i + 50]
        inst = part[["x1", "x2", "colour", "group", "label"]].to_dict("records")
        at = start + timedelta(minutes=i // 10)
        assert post(client, kserve("request", f"{prefix}{i}", {"instances": inst}, at)).status_code == 202
        assert post(client, kserve("response", f"{prefix}{i}", {"predictions": part["score"].tolist()}, at)
                    ).status_code == 202


def _count(agent: Agent) -> int:
    with agent.store.session() as s:
        return int(s.execute(select(func.count()).select_from(InferenceEvent)).scalar_one())


def _source(agent: Agent) -> CloudEventsSource:
    cfg = CloudEventsSourceConfig(system="scoring", feature_names=["x1", "colour"], prediction_column="score")
    return CloudEventsSource(cfg, timestamp_column="ts", store=agent.store)


def test_kserve_v1_and_v2_halves_are_joined_on_ce_id_into_rows(client: TestClient, agent: Agent) -> None:
    r = post(client, kserve("request", "a1", {"instances": [[0.5, "red"], [1.5, "blue"]]}, T))
    assert r.status_code == 202, r.text
    assert _count(agent) == 1  # committed before the answer
    assert post(client, kserve("response", "a1", {"predictions": [0.9, 0.1]}, T + timedelta(seconds=1))
                ).status_code == 202
    v2_req = {"inputs": [{"name": "x1", "shape": [1], "datatype": "FP64", "data": [2.5]},
                         {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["green"]}]}
    v2_resp = {"outputs": [{"name": "p", "shape": [1, 1], "datatype": "FP32", "data": [0.7]}]}
    post(client, kserve("response", "b2", v2_resp, T + timedelta(minutes=5)))  # the response may come first
    post(client, kserve("request", "b2", v2_req, T + timedelta(minutes=5)))
    post(client, kserve("request", "c3", {"instances": [[9.0, "red"]]}, T))  # a lone half: never answered
    rows = _source(agent).read_window(T, T + timedelta(hours=1), columns=["id", "ts", "x1", "colour", "score"])
    rows = rows.sort_values("id").reset_index(drop=True)
    assert rows["id"].tolist() == ["a1/0", "a1/1", "b2"]
    assert rows["x1"].tolist() == [0.5, 1.5, 2.5]
    assert rows["colour"].tolist() == ["red", "blue", "green"]
    assert rows["score"].tolist() == [0.9, 0.1, pytest.approx(0.7)]
    assert _source(agent).read_window(T + timedelta(hours=1), T + timedelta(hours=2), columns=["id"]).empty


def test_a_redelivered_event_is_acknowledged_and_stored_once(client: TestClient, agent: Agent) -> None:
    msg = kserve("request", "dup", {"instances": [[1.0, "red"]]}, T)
    assert post(client, msg).status_code == 202
    again = post(client, msg)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert _count(agent) == 1


def test_seldon_events_and_feedback_become_rows_with_labels(client: TestClient, agent: Agent) -> None:
    req = {"data": {"names": ["x1", "colour"], "ndarray": [[0.2, "red"]]}}
    resp = {"data": {"names": ["p"], "ndarray": [[0.8]]}}
    assert post(client, seldon("request", "s1", req, T)).status_code == 202
    assert post(client, seldon("response", "s1", resp, T)).status_code == 202
    fb = {"request": req, "response": resp, "truth": {"data": {"ndarray": [[1]]}}, "reward": 1}
    assert post(client, seldon("feedback", "fb-77", fb, T + timedelta(hours=3), requestid="s1")).status_code == 202
    rows = _source(agent).read_window(T, T + timedelta(hours=1), columns=["id", "x1", "score", "label"])
    assert rows.to_dict("records") == [{"id": "s1", "x1": 0.2, "score": 0.8, "label": 1}]


def test_structured_mode_and_the_shared_path_are_accepted(client: TestClient, agent: Agent) -> None:
    ev = CloudEvent(attributes={"specversion": "1.0", "type": "org.kubeflow.serving.inference.request", "id": "st",
                                "source": "x", "datacontenttype": "application/json"},
                    data={"instances": [[1.0, "red"]]})
    msg = to_structured(ev, JSONFormat())
    r = client.post("/api/v1/ingest/cloudevents", headers=msg.headers, content=msg.body)
    assert r.status_code == 202, r.text
    with agent.store.session() as s:
        row = s.execute(select(InferenceEvent)).scalar_one()
    assert row.system_id == "" and row.kind == "request" and json.loads(row.body) == {"instances": [[1.0, "red"]]}


@pytest.mark.parametrize(("change", "reason"), [
    ({"ce-type": "com.example.other"}, "unsupported ce-type"),
    ({"ce-id": None}, "ce-id"),
    ({"ce-specversion": "0.3"}, "specversion"),
])
def test_a_malformed_event_gets_400_with_the_reason(client: TestClient, agent: Agent, change: dict[str, Any],
                                                    reason: str) -> None:
    headers, body = kserve("request", "m1", {"instances": [[1.0, "red"]]}, T)
    for k, v in change.items():
        if v is None:
            headers.pop(k)
        else:
            headers[k] = v
    r = client.post("/api/v1/ingest/scoring/cloudevents", headers=headers, content=body)
    assert r.status_code == 400 and reason in r.json()["detail"]
    assert _count(agent) == 0


def test_a_payload_that_is_no_inference_payload_is_refused(client: TestClient, agent: Agent) -> None:
    headers, _ = kserve("request", "m2", {}, T)
    r = client.post("/api/v1/ingest/scoring/cloudevents", headers=headers, content=b'{"foo": 1}')
    assert r.status_code == 400 and "instances" in r.json()["detail"]
    r = client.post("/api/v1/ingest/scoring/cloudevents", headers=headers, content=b"\xff\xfe not json")
    assert r.status_code == 400
    assert _count(agent) == 0


def test_an_oversized_body_is_refused_with_413(client: TestClient, agent: Agent) -> None:
    headers, _ = kserve("request", "big", {}, T)
    body = json.dumps({"instances": [[0.0] * 10] * (MAX_EVENT_BYTES // 40)}).encode()
    assert len(body) > MAX_EVENT_BYTES
    assert client.post("/api/v1/ingest/scoring/cloudevents", headers=headers, content=body).status_code == 413
    assert _count(agent) == 0


def test_ingest_needs_a_token_with_the_ingest_scope(client: TestClient, agent: Agent) -> None:
    msg = kserve("request", "auth", {"instances": [[1.0, "red"]]}, T)
    assert client.post("/api/v1/ingest/scoring/cloudevents", headers={**msg[0], "Authorization": ""},
                       content=msg[1]).status_code == 401
    assert client.post("/api/v1/ingest/scoring/cloudevents", headers={**msg[0], "Authorization": f"Bearer {READER}"},
                       content=msg[1]).status_code == 403
    assert post(client, msg, path="/api/v1/ingest/nosuch/cloudevents").status_code == 404
    assert _count(agent) == 0


def test_the_cloudevents_source_can_open_the_store_by_url(client: TestClient, agent: Agent,
                                                          scenario: Scenario) -> None:
    post(client, kserve("request", "u1", {"instances": [[1.0, "red"]]}, T))
    post(client, kserve("response", "u1", {"predictions": [1]}, T))
    url = yaml.safe_load(scenario.config_path.read_text())["agent"]["state_url"]
    src = CloudEventsSource(CloudEventsSourceConfig(inference_service="scorer", namespace="ml",
                                                    feature_names=["x1", "colour"], state_url=url),
                            timestamp_column="ts")
    assert src.read_all(columns=["id", "prediction"]).to_dict("records") == [{"id": "u1", "prediction": 1}]
    src.close()


def test_events_are_stored_and_joined_in_a_postgresql_state_store(scenario: Scenario, pg_url: str) -> None:
    cfg = scenario.config()
    cfg["agent"]["state_url"] = pg_url
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest"]}]
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        app = FastAPI()
        app.include_router(create_router(agent))
        client = TestClient(app, headers={"Authorization": f"Bearer {INGEST}"})
        big = {"instances": [[float(i), "red"] for i in range(4000)]}  # ~60 KiB: past a 64 KiB TEXT would fail
        assert post(client, kserve("request", "pg1", big, T)).status_code == 202
        assert post(client, kserve("response", "pg1", {"predictions": [0] * 4000}, T)).status_code == 202
        assert post(client, kserve("response", "pg1", {"predictions": [0] * 4000}, T)).status_code == 200
        rows = _source(agent).read_window(T, T + timedelta(hours=1), columns=["id", "x1", "score"])
        assert len(rows) == 4000 and rows["x1"].sum() == sum(range(4000))
    finally:
        agent.close()


def test_an_event_that_cannot_be_stored_is_never_acknowledged(client: TestClient, agent: Agent) -> None:
    with agent.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE inference_events")  # the store is broken under the endpoint
    r = post(client, kserve("request", "lost", {"instances": [[1.0, "red"]]}, T))
    assert r.status_code == 503 and "not stored" in r.json()["detail"]


def test_the_agent_judges_a_window_of_ingested_events(scenario: Scenario) -> None:
    from tests.conftest import T0, make_rows

    cfg = scenario.config()
    cfg["agent"]["tokens"] = [{"name": "logger", "value": INGEST, "scopes": ["ingest"]}]
    system = cfg["systems"][0]
    system["source"] = {"type": "cloudevents", "system": "scoring", "prediction_column": "score",
                        "state_url": cfg["agent"]["state_url"]}
    system["checks"]["fairness"]["enabled"] = False
    scenario.rewrite(cfg)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        app = FastAPI()
        app.include_router(create_router(agent))
        client = TestClient(app, headers={"Authorization": f"Bearer {INGEST}"})
        post_pairs(client, make_rows(scenario.rng, 300, T0), T0, "r")  # six requests of 50 in the first hour
        outcomes = agent.run_system("scoring", T0 + timedelta(hours=1, minutes=1))
        assert [(o.window_start, o.rows) for o in outcomes] == [(T0, 300)]
        assert outcomes[0].status in ("ok", "warning", "breach"), outcomes[0].error
    finally:
        agent.close()
