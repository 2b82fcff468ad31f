"""Prometheus exposition: a custom collector that builds every metric family from the state store on
each scrape, so a feature or a system that disappears stops being exported and every replica serves
the same numbers. Labels are few and bounded: per-system series are capped, highest drift first.
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from agent import __version__
from agent.decisions import STATES
from agent.schema import CheckStat, Decision, Incident, MetricValue, OutboxMessage
from agent.store import Store

PREFIX = "aims_"

# family -> (help, label names after `system`)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "feature_drift_score": ("Drift score per feature: p-value for tests, distance for distances (see method).",
                            ("feature", "method")),
    "feature_drift_detected": ("1 if the feature drifted in the last judged window.", ("feature",)),
    "dataset_drift_share": ("Share of monitored features that drifted in the last judged window.", ()),
    "dataset_drift_detected": ("1 if the share of drifted features reached the dataset-drift threshold.", ()),
    "prediction_drift_score": ("Drift score of the model's prediction column.", ("method",)),
    "prediction_drift_detected": ("1 if the prediction column drifted in the last judged window.", ()),
    "fairness_metric": ("Fairness gap between groups of a sensitive feature (fairlearn definitions).",
                        ("sensitive", "metric")),
    "fairness_group_rate": ("Per-group selection rate, true positive rate or false positive rate.",
                            ("sensitive", "group", "metric")),
    "fairness_group_count": ("Rows per group of a sensitive feature in the last judged window.",
                             ("sensitive", "group")),
    "performance_metric": ("Model performance on labelled rows of the last judged window.", ("metric",)),
    "data_quality_missing_share": ("Share of missing values per feature in the last judged window.",
                                   ("feature",)),
    "data_quality_findings": ("Count of data-quality findings by kind in the last judged window.", ("kind",)),
    "window_rows": ("Rows in the last judged window.", ()),
    "window_labelled_rows": ("Rows with ground truth in the last window judged on labels.", ()),
}
CAPPED = {"feature_drift_score", "feature_drift_detected", "data_quality_missing_share"}


class StateCollector(Collector):
    """Reads the latest values and counters from the store; nothing is cached between scrapes."""

    def __init__(self, store: Store, *, max_series_per_system: int = 500,
                 outbox_totals: Any | None = None) -> None:
        self.store = store
        self.cap = max_series_per_system
        self.outbox_totals = outbox_totals

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families are built per scrape

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        info = InfoMetricFamily(f"{PREFIX}build", "aims-agent build information.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        with self.store.session() as s:
            yield from self._values(s)
            yield from self._checks(s)
            yield from self._decisions(s)
            yield from self._incidents(s)
            yield from self._outbox(s)
        g = GaugeMetricFamily(f"{PREFIX}scrape_duration_seconds", "Time to build this exposition from the store.")
        g.add_metric([], time.perf_counter() - t0)
        yield g

    def _values(self, s: Any) -> Iterator[Metric]:
        rows = s.execute(select(MetricValue.system_id, MetricValue.family, MetricValue.labels,
                                MetricValue.value)).all()
        by_family: dict[str, list[tuple[str, dict[str, str], float]]] = defaultdict(list)
        for system_id, family, labels, value in rows:
            if family in FAMILIES:
                by_family[family].append((system_id, json.loads(labels), float(value)))
        keep = self._capped_features(by_family.get("feature_drift_score", []),
                                     by_family.get("feature_drift_detected", []))
        dropped: dict[str, int] = defaultdict(int)
        for family, (help_text, label_names) in FAMILIES.items():
            fam = GaugeMetricFamily(f"{PREFIX}{family}", help_text, labels=["system", *label_names])
            rows_f = sorted(by_family.get(family, []), key=lambda r: (r[0], sorted(r[1].items())))
            for system_id, labels, value in rows_f:
                if family in CAPPED and system_id in keep and labels.get("feature", "") not in keep[system_id]:
                    dropped[system_id] += 1
                    continue
                fam.add_metric([system_id, *[str(labels.get(n, "")) for n in label_names]], value)
            yield fam
        capped = GaugeMetricFamily(f"{PREFIX}series_dropped", "Per-feature series not exported because of the "
                                   "per-system cap (server.max_series_per_system).", labels=["system"])
        for system_id, n in sorted(dropped.items()):
            capped.add_metric([system_id], float(n))
        yield capped

    def _capped_features(self, scores: list[tuple[str, dict[str, str], float]],
                         detected: list[tuple[str, dict[str, str], float]]) -> dict[str, set[str]]:
        """Per capped system, the features kept: drifted ones first, then by name (stable across scrapes)."""
        flagged = {(sid, lbl.get("feature", "")) for sid, lbl, v in detected if v >= 1.0}
        per_system: dict[str, set[str]] = defaultdict(set)
        for system_id, labels, _ in scores:
            per_system[system_id].add(labels.get("feature", ""))
        out: dict[str, set[str]] = {}
        for system_id, feats in per_system.items():
            if len(feats) > self.cap:
                ordered = sorted(feats, key=lambda f: ((system_id, f) not in flagged, f))
                out[system_id] = set(ordered[: self.cap])
        return out

    def _checks(self, s: Any) -> Iterator[Metric]:
        runs = CounterMetricFamily(f"{PREFIX}check_runs", "Check runs per system and check.",
                                   labels=["system", "check"])
        fails = CounterMetricFamily(f"{PREFIX}check_failures", "Failed check runs per system and check.",
                                    labels=["system", "check"])
        last_ok = GaugeMetricFamily(f"{PREFIX}check_last_success_timestamp_seconds",
                                    "Unix time of the last successful run of the check.", labels=["system", "check"])
        last_run = GaugeMetricFamily(f"{PREFIX}check_last_run_timestamp_seconds",
                                     "Unix time of the last run of the check.", labels=["system", "check"])
        dur = GaugeMetricFamily(f"{PREFIX}check_duration_seconds", "Duration of the last run of the check.",
                                labels=["system", "check"])
        for st in s.execute(select(CheckStat).order_by(CheckStat.system_id, CheckStat.check)).scalars():
            lbl = [st.system_id, st.check]
            runs.add_metric(lbl, float(st.runs))
            fails.add_metric(lbl, float(st.failures))
            if st.last_success_at is not None:
                last_ok.add_metric(lbl, _ts(st.last_success_at))
            if st.last_run_at is not None:
                last_run.add_metric(lbl, _ts(st.last_run_at))
            dur.add_metric(lbl, float(st.last_duration_s))
        yield from (runs, fails, last_ok, last_run, dur)

    def _decisions(self, s: Any) -> Iterator[Metric]:
        fam = GaugeMetricFamily(f"{PREFIX}decision_state", "Current decision per system, check and subject "
                                "(1 for the current state).", labels=["system", "check", "subject", "state"])
        for d in s.execute(select(Decision).order_by(Decision.system_id, Decision.check, Decision.subject)).scalars():
            for state in STATES:
                fam.add_metric([d.system_id, d.check, d.subject, state], 1.0 if d.state == state else 0.0)
        yield fam

    def _incidents(self, s: Any) -> Iterator[Metric]:
        fam = GaugeMetricFamily(f"{PREFIX}incidents_open", "Open AI incidents per system and kind.",
                                labels=["system", "kind"])
        rows = s.execute(select(Incident.system_id, Incident.kind, func.count())
                         .where(Incident.status != "resolved").group_by(Incident.system_id, Incident.kind)).all()
        for system_id, kind, n in sorted(rows):
            fam.add_metric([system_id, kind], float(n))
        yield fam

    def _outbox(self, s: Any) -> Iterator[Metric]:
        pending = GaugeMetricFamily(f"{PREFIX}outbox_pending", "Notifications waiting for delivery per sink.",
                                    labels=["sink"])
        oldest = GaugeMetricFamily(f"{PREFIX}outbox_oldest_pending_timestamp_seconds",
                                   "Creation time of the oldest undelivered notification per sink.", labels=["sink"])
        done = CounterMetricFamily(f"{PREFIX}notifications_delivered", "Notifications delivered per sink.",
                                   labels=["sink"])
        dead = CounterMetricFamily(f"{PREFIX}notifications_failed", "Notifications given up on (permanent "
                                   "errors or too many attempts) per sink.", labels=["sink"])
        rows = s.execute(select(OutboxMessage.sink, OutboxMessage.status, func.count(),
                                func.min(OutboxMessage.created_at))
                         .group_by(OutboxMessage.sink, OutboxMessage.status)).all()
        for sink, status, n, first in sorted(rows, key=lambda r: (r[0], r[1])):
            if status == "pending":
                pending.add_metric([sink], float(n))
                oldest.add_metric([sink], _ts(first))
            elif status == "delivered":
                done.add_metric([sink], float(n))
            elif status == "dead":
                dead.add_metric([sink], float(n))
        yield from (pending, oldest, done, dead)


def _ts(value: Any) -> float:
    from agent.incidents import utc

    return float(utc(value).timestamp())
