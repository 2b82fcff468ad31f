"""A label value of any length is stored whole-JSON and exported bounded (128 characters with a digest),
and a stored row whose labels cannot be decoded is skipped and counted: /metrics never fails on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from agent.api import create_app
from agent.evidence import Ledger
from agent.exposition import LABEL_VALUE_MAX, LABELS_KEY_MAX, Exposition, StateCollector, bound_label_value, series_key
from agent.runner import Agent
from agent.schema import MetricValue
from agent.service import Service
from agent.store import Store
from config.loader import load_config
from tests.conftest import T0, Scenario, make_rows

LONG = "group B of a free-text field: " + "x" * 470  # 500 characters, as a sensitive value may be


def _scrape(agent: Agent) -> str:
    with TestClient(create_app(agent, service=Service(agent, run_on_start=False))) as client:
        r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


def test_a_sensitive_value_of_500_characters_is_exported_bounded(scenario: Scenario) -> None:
    for h in range(3):
        rows = make_rows(scenario.rng, 400, T0 + timedelta(hours=h), bias=1.0)
        rows["group"] = rows["group"].map({"A": "A", "B": LONG})
        scenario.write(rows)
    agent = Agent(load_config(scenario.config_path), base_dir=scenario.dir)
    try:
        outcomes = agent.run_system("scoring", T0 + timedelta(hours=3))
        assert [o.status for o in outcomes] and all(o.status != "failed" for o in outcomes)
        text = _scrape(agent)
    finally:
        agent.close()
    groups = {s.labels["group"] for f in text_string_to_metric_families(text)
              if f.name == "aims_fairness_group_rows" for s in f.samples}
    bounded = bound_label_value(LONG)
    assert groups == {"A", bounded}
    assert len(bounded) == LABEL_VALUE_MAX and bounded.startswith(LONG[:100]) and "~" in bounded
    assert "aims_series_undecodable{" not in text


@pytest.mark.parametrize("labels", [
    {"sensitive": "s" * 300, "group": "g" * 300, "metric": "selection_rate"},
    {"sensitive": "😀" * 200, "group": '"\\\n' * 200, "metric": "m" * 200},
    {"feature": "\x00\x01" * 400},
])
def test_the_stored_labels_are_whole_json_that_fits_its_column(labels: dict[str, str]) -> None:
    key = series_key(labels)
    assert len(key) <= LABELS_KEY_MAX
    decoded = json.loads(key)
    assert set(decoded) == set(labels)
    assert all(len(v) <= LABEL_VALUE_MAX for v in decoded.values())
    assert series_key(labels) == key, "the same labels always get the same key"
    assert series_key({**labels, next(iter(labels)): next(iter(labels.values())) + "!"}) != key


def test_a_row_with_undecodable_labels_is_skipped_and_counted(tmp_path: object) -> None:
    store = Store(f"sqlite:///{tmp_path}/state.db")
    t = datetime(2026, 3, 2, tzinfo=UTC)
    try:
        with store.transaction() as s:
            # what an earlier version stored: JSON cut at 400 characters
            cut = json.dumps({"group": LONG, "sensitive": "sex"}, sort_keys=True)[:400]
            s.add(MetricValue(system_id="credit", family="fairness_group_count", labels=cut, value=3.0,
                              updated_at=t))
            s.add(MetricValue(system_id="credit", family="window_rows", labels="[1]", value=1.0, updated_at=t))
            s.add(MetricValue(system_id="credit", family="window_rows", labels="{}", value=400.0, updated_at=t))
            Ledger().append(s, "check_run", {"check_run_id": 1}, system_id="credit", now=t)
        text = Exposition(store, StateCollector(store)).render().decode()
    finally:
        store.close()
    assert 'aims_window_rows{system="credit"} 400.0' in text
    assert 'aims_series_undecodable{system="credit"} 2.0' in text
    assert "aims_fairness_group_rows{" not in text
