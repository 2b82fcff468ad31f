"""One series budget per system across every family: 10,000 fairness groups and many features export
at most ``server.max_series_per_system`` series, keeping the system-level series, the decisions in
breach, the drifted features and the largest groups, with the rest summed into "(other)" and counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent.evidence import Ledger
from agent.exposition import Exposition, StateCollector
from agent.schema import CheckStat, Decision, MetricValue
from agent.store import Store

T = datetime(2026, 3, 2, tzinfo=UTC)
GROUPS = 10_000
FEATURES = 200
BUDGET = 500


def _key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    rows: list[dict[str, object]] = []

    def add(family: str, labels: dict[str, str], value: float) -> None:
        rows.append({"system_id": "credit", "family": family, "labels": _key(labels), "value": value,
                     "updated_at": T})

    for g in range(GROUPS):
        spec, group = "postcode", f"pc-{g:05d}"
        add("fairness_group_count", {"sensitive": spec, "group": group}, float(g + 1))  # pc-09999 largest
        for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            add("fairness_group_rate", {"sensitive": spec, "group": group, "metric": metric}, 0.5)
    for f in range(FEATURES):
        feature = f"f{f:03d}"
        add("feature_drift_score", {"feature": feature, "method": "psi"}, 0.01)
        add("feature_drift_detected", {"feature": feature}, 1.0 if feature in ("f150", "f199") else 0.0)
        add("data_quality_missing_share", {"feature": feature}, 0.0)
    add("fairness_metric", {"sensitive": "postcode", "metric": "demographic_parity_difference"}, 0.3)
    add("window_rows", {}, 50_005_000.0)
    with store.transaction() as s:
        s.execute(MetricValue.__table__.insert(), rows)
        s.add(CheckStat(system_id="credit", check="collection", runs=3, failures=0, last_run_at=T,
                        last_success_at=T, last_duration_s=0.1))
        for i in range(20):  # decisions share the budget too
            s.add(Decision(system_id="credit", check="data_quality", subject=f"d{i:03d}",
                           state="breach" if i == 19 else "ok", raw_state="ok", breach_streak=0, ok_streak=1,
                           value=0.0, detail={}, updated_at=T))
        Ledger().append(s, "check_run", {"check_run_id": 1}, system_id="credit", now=T)
    return store


def kept_groups(samples: list[tuple[str, Sample]]) -> int:
    return len({s.labels["group"] for n, s in samples if n == "aims_fairness_group_rows"} - {"(other)"})


def test_ten_thousand_groups_stay_within_the_series_budget(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        text = Exposition(store, StateCollector(store, max_series_per_system=BUDGET)).render().decode()
    finally:
        store.close()
    samples = [(f.name, s) for f in text_string_to_metric_families(text) for s in f.samples
               if s.labels.get("system") == "credit"]
    budgeted = [(n, s) for n, s in samples if n != "aims_series_dropped"]
    assert len(budgeted) == BUDGET

    def names(family: str, label: str) -> set[str]:
        return {s.labels[label] for n, s in budgeted if n == family}

    assert {"aims_window_rows", "aims_fairness_metric", "aims_check_runs"} <= {n for n, _ in budgeted}
    assert "d019" in names("aims_decision_state", "subject"), "the decision in breach is kept"
    features = names("aims_feature_drift_score", "feature")
    assert {"f150", "f199"} <= features, "drifted features are kept"
    assert len(features) > 50 and kept_groups(budgeted) > 50, "the rest is shared by features and groups"
    groups = names("aims_fairness_group_rows", "group")
    kept = sorted(groups - {"(other)"})
    assert "(other)" in groups and kept, "the largest groups are kept, the rest summed"
    assert kept[-1] == "pc-09999" and all(g > "pc-09000" for g in kept), "largest groups first"
    rows = {s.labels["group"]: s.value for n, s in budgeted if n == "aims_fairness_group_rows"}
    assert sum(rows.values()) == GROUPS * (GROUPS + 1) / 2, "every row is in a kept group or in (other)"
    other_rate = [s.value for n, s in budgeted if n == "aims_fairness_group_rate" and s.labels["group"] == "(other)"]
    assert other_rate == [0.5]

    dropped = {s.labels["family"]: s.value for n, s in samples if n == "aims_series_dropped"}
    stored = GROUPS * 4 + FEATURES * 3 + 2 + 5 + 20 * 4  # the real series: (other) is not one of them
    assert sum(dropped.values()) == stored - (BUDGET - 2)
    assert dropped["fairness_group_rows"] == GROUPS - len(kept)
