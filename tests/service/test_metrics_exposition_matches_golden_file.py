"""/metrics from a known state is exactly the golden file, and promtool accepts it.

Regenerate after an intended change with ``AIMS_UPDATE_GOLDEN=1`` set while running this file's tests,
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from agent.exposition import Exposition, StateCollector
from agent.schema import CheckStage, CheckStat, Decision, Incident, MetricValue, OutboxMessage
from agent.stages import StageRecorder
from agent.store import Store

GOLDEN = Path(__file__).with_name("golden") / "metrics.txt"
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def populated_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    series = [
        ("credit", "feature_drift_score", {"feature": "income", "method": "wasserstein"}, 0.31),
        ("credit", "feature_drift_score", {"feature": "age", "method": "wasserstein"}, 0.02),
        ("credit", "feature_drift_score", {"feature": "region", "method": "jensenshannon"}, 0.05),
        ("credit", "feature_drift_detected", {"feature": "income"}, 1.0),
        ("credit", "feature_drift_detected", {"feature": "age"}, 0.0),
        ("credit", "feature_drift_detected", {"feature": "region"}, 0.0),
        ("credit", "dataset_drift_share", {}, 1 / 3),
        ("credit", "dataset_drift_detected", {}, 0.0),
        ("credit", "prediction_drift_score", {"method": "ks"}, 0.2),
        ("credit", "prediction_drift_detected", {}, 0.0),
        ("credit", "fairness_metric", {"sensitive": "sex", "metric": "demographic_parity_difference"}, 0.18),
        ("credit", "fairness_group_rate", {"sensitive": "sex", "group": "F", "metric": "selection_rate"}, 0.41),
        ("credit", "fairness_group_rate", {"sensitive": "sex", "group": "M", "metric": "selection_rate"}, 0.59),
        ("credit", "fairness_group_count", {"sensitive": "sex", "group": "F"}, 190.0),
        ("credit", "fairness_group_count", {"sensitive": "sex", "group": "M"}, 210.0),
        ("credit", "fairness_group_rate", {"sensitive": "sex", "group": "X", "metric": "selection_rate"}, 0.8),
        ("credit", "fairness_group_count", {"sensitive": "sex", "group": "X"}, 10.0),
        ("credit", "performance_metric", {"metric": "accuracy"}, 0.83),
        ("credit", "data_quality_missing_share", {"feature": "income"}, 0.01),
        ("credit", "data_quality_findings", {"kind": "unseen_category"}, 2.0),
        ("credit", "window_rows", {}, 400.0),
        ("churn", "window_rows", {}, 120.0),
    ]
    with store.transaction() as s:
        for system, family, labels, value in series:
            s.add(MetricValue(system_id=system, family=family, labels=json.dumps(labels, sort_keys=True,
                                                                                separators=(",", ":")),
                              value=value, updated_at=T))
        s.add(CheckStat(system_id="credit", check="collection", runs=12, failures=1, last_run_at=T,
                        last_success_at=T, last_duration_s=0.25))
        s.add(CheckStat(system_id="credit", check="drift", runs=11, failures=0, last_run_at=T,
                        last_success_at=T, last_duration_s=0.25))
        for stage, seconds, ok in (("read", 0.125, True), ("metrics", 0.5, True), ("commit", 0.0625, False)):
            s.add(CheckStage(system_id="credit", stage=stage, duration_s=seconds, ok=ok, generation=1, finished_at=T))
        s.add(Decision(system_id="credit", check="drift", subject="income", state="breach", raw_state="breach",
                       breach_streak=2, ok_streak=0, value=0.31, detail={}, updated_at=T))
        s.add(Incident(fingerprint="f1", system_id="credit", kind="drift", subject="income", status="open",
                       severity="medium", title="Drift of income", opened_at=T, updated_at=T, content={},
                       open_key="f1"))
        s.add(OutboxMessage(incident_id=1, fingerprint="f1", sink="jira", action="open", payload={},
                            status="pending", attempts=1, next_attempt_at=T, created_at=T, error_kind="retryable",
                            last_error="HTTP 503", failing_since=T))
        s.add(OutboxMessage(incident_id=1, fingerprint="f1", sink="pd", action="open", payload={},
                            status="dead", attempts=1, next_attempt_at=T, created_at=T, error_kind="permanent",
                            last_error="HTTP 400 invalid event", failing_since=T, dead_at=T))
        s.add(OutboxMessage(incident_id=1, fingerprint="f1", sink="slack", action="open", payload={},
                            status="delivered", attempts=1, next_attempt_at=T, created_at=T, delivered_at=T))
    return store


# the budget of the golden state: every series of `credit` but the smallest two of its three groups
# of `sex` (F and X) fits, so those two become one "(other)" group (2 slots set aside for it)
GOLDEN_BUDGET = 40


def collector(store: Store, budget: int = GOLDEN_BUDGET) -> StateCollector:
    return StateCollector(store, max_series_per_system=budget)


def normalised(text: str) -> str:
    # the only lines that vary between runs: the Python version and the time the build took
    text = re.sub(r'python="[^"]*"', 'python="3"', text)
    return re.sub(r"^aims_scrape_duration_seconds .*$", "aims_scrape_duration_seconds 0.0", text, flags=re.M)


def exposition(tmp_path: Path) -> str:
    store = populated_store(tmp_path)
    try:
        return normalised(Exposition(store, collector(store)).render().decode())
    finally:
        store.close()


def test_exposition_of_a_known_state_is_the_golden_file(tmp_path: Path) -> None:
    text = exposition(tmp_path)
    if os.environ.get("AIMS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition(tmp_path), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool reports lint problems (naming, units, counters) on stdout without failing on all of them
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_the_series_budget_keeps_drifted_features_and_counts_the_dropped_ones(tmp_path: Path) -> None:
    store = populated_store(tmp_path)
    try:
        # 32 series of `credit` are ranked first (system-level, the decision in breach, drifted
        # `income`); the 4 left are shared between the other features and the groups: `age` (first
        # by name) and the "(other)" group of all three groups fit, `region` does not
        text = normalised(Exposition(store, collector(store, budget=36)).render().decode())
    finally:
        store.close()
    assert 'aims_feature_drift_score{feature="income",method="wasserstein",system="credit"}' in text
    assert 'aims_feature_drift_score{feature="age",method="wasserstein",system="credit"}' in text
    assert 'feature="region"' not in text
    assert 'aims_fairness_group_rows{group="(other)",sensitive="sex",system="credit"} 410.0' in text
    assert 'aims_series_dropped{family="feature_drift_score",system="credit"} 1.0' in text
    assert 'aims_series_dropped{family="feature_drift_detected",system="credit"} 1.0' in text
    assert 'aims_series_dropped{family="fairness_group_rows",system="credit"} 3.0' in text
    assert 'aims_series_dropped{family="fairness_group_rate",system="credit"} 3.0' in text
    assert len([ln for ln in text.splitlines() if 'system="credit"' in ln and "series_dropped" not in ln]) == 36


def test_the_golden_budget_sums_the_smallest_groups_into_other(tmp_path: Path) -> None:
    text = exposition(tmp_path)
    assert 'aims_fairness_group_rows{group="M",sensitive="sex",system="credit"} 210.0' in text
    assert 'aims_fairness_group_rows{group="(other)",sensitive="sex",system="credit"} 200.0' in text
    # the selection rate of F and X together, weighted by their rows
    rate = (0.41 * 190 + 0.8 * 10) / 200
    assert f'aims_fairness_group_rate{{group="(other)",metric="selection_rate",sensitive="sex",system="credit"}} ' \
        f'{rate!r}' in text
    assert 'group="F"' not in text and 'group="X"' not in text


def test_the_fast_renderer_writes_what_prometheus_client_writes(tmp_path: Path) -> None:
    store = populated_store(tmp_path)
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector(store))
        reference = normalised(generate_latest(registry).decode())
        assert normalised(Exposition(store, collector(store)).render().decode()) == reference
    finally:
        store.close()


def test_the_cached_exposition_is_rebuilt_when_the_state_changes(tmp_path: Path) -> None:
    from agent.evidence import Ledger

    store = populated_store(tmp_path)
    try:
        expo = Exposition(store, collector(store))
        first = expo.render()
        assert expo.render() is first, "unchanged state: the cached body is served"
        with store.transaction() as s:
            s.add(MetricValue(system_id="churn", family="performance_metric", labels='{"metric":"accuracy"}',
                              value=0.5, updated_at=T))
            Ledger().append(s, "check_run", {"check_run_id": 1}, system_id="churn", now=T)
        second = expo.render()
        assert b'aims_performance_metric{metric="accuracy",system="churn"} 0.5' in second
        StageRecorder(store)("churn", "read", 0.5, True)
        assert b'aims_check_stage_success{stage="read",system="churn"} 1.0' in expo.render()
    finally:
        store.close()
