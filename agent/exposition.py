"""Prometheus exposition: a custom collector that builds every metric family from the state store on
each scrape, so a feature or a system that disappears stops being exported and every replica serves
the same numbers. Labels are few and bounded: per-system series are capped, highest drift first.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go
from sqlalchemy import func, select

from agent import __version__
from agent.decisions import STATES
from agent.schema import CheckStat, Decision, Incident, LedgerHead, MetricValue, OutboxMessage
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
    "window_late_rows": ("Rows counted in the last judged window that arrived after their own window was "
                         "judged (id watermark).", ()),
}
CAPPED = {"feature_drift_score", "feature_drift_detected", "data_quality_missing_share"}
# stored family -> exported name, where Prometheus naming rules want another name (a gauge may not end
# in `_count`, which is reserved for histograms and summaries)
EXPORTED = {"fairness_group_count": "fairness_group_rows"}


class StageTimings:
    """Per (system, stage) outcome of this replica's last check: the runner's ``stage_hook``.

    Stages are ``read`` (reference and window from the source), ``metrics`` (drift, quality,
    performance, fairness) and ``commit`` (decisions, incidents, evidence in one transaction). Like
    node_exporter's ``node_scrape_collector_*``, these describe this process's own work, so with
    several replicas each one reports the systems it checked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], tuple[float, bool]] = {}
        self.generation = 0  # bumped on every change, so a cached exposition knows it is stale

    def __call__(self, system_id: str, stage: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self._last[(system_id, stage)] = (seconds, ok)
            self.generation += 1

    def snapshot(self) -> list[tuple[str, str, float, bool]]:
        with self._lock:
            return [(sid, stage, sec, ok) for (sid, stage), (sec, ok) in sorted(self._last.items())]


class StateCollector(Collector):
    """Reads the latest values and counters from the store; nothing is cached between scrapes."""

    def __init__(self, store: Store, *, max_series_per_system: int = 500,
                 outbox_totals: Any | None = None, stages: StageTimings | None = None) -> None:
        self.store = store
        self.cap = max_series_per_system
        self.outbox_totals = outbox_totals
        self.stages = stages

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
        yield from self._stages()
        g = GaugeMetricFamily(f"{PREFIX}scrape_duration_seconds", "Time the last build of this exposition from "
                              "the store took.")
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
            fam = GaugeMetricFamily(f"{PREFIX}{EXPORTED.get(family, family)}", help_text,
                                    labels=["system", *label_names])
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

    def _stages(self) -> Iterator[Metric]:
        dur = GaugeMetricFamily(f"{PREFIX}check_stage_duration_seconds", "Duration of each stage (read, metrics, "
                                "commit) of the last check this replica ran.", labels=["system", "stage"])
        ok = GaugeMetricFamily(f"{PREFIX}check_stage_success", "1 if the stage of the last check this replica "
                               "ran succeeded, 0 if it failed.", labels=["system", "stage"])
        for system_id, stage, seconds, succeeded in (self.stages.snapshot() if self.stages else []):
            dur.add_metric([system_id, stage], seconds)
            ok.add_metric([system_id, stage], 1.0 if succeeded else 0.0)
        yield from (dur, ok)

    def _decisions(self, s: Any) -> Iterator[Metric]:
        fam = GaugeMetricFamily(f"{PREFIX}decision_state", "Current decision per system, check and subject "
                                "(1 for the current state).", labels=["system", "check", "subject", "state"])
        rows = s.execute(select(Decision.system_id, Decision.check, Decision.subject, Decision.state)
                         .order_by(Decision.system_id, Decision.check, Decision.subject)).all()
        for system_id, check, subject, current in rows:
            for state in STATES:
                fam.add_metric([system_id, check, subject, state], 1.0 if current == state else 0.0)
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


class Exposition:
    """The /metrics body, rebuilt from the store only when the state changed since the last build.

    Every change the exposition shows (check runs, decisions, incidents, notifications, config loads)
    appends an evidence record in the same transaction, so the ledger head is the state's version: a
    scrape costs one single-row query until it moves (or this replica's stage timings change).
    ``refresh()`` rebuilds unconditionally; the service calls it shortly after checks and once a minute,
    so scrapes rarely pay for a build and nothing stays stale for longer than that minute.
    """

    def __init__(self, store: Store, collector: StateCollector) -> None:
        self.store = store
        self.collector = collector
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], bytes] | None = None

    def version(self) -> tuple[int, int]:
        with self.store.session() as s:
            seq = s.execute(select(LedgerHead.seq).where(LedgerHead.id == 1)).scalar_one_or_none()
        stages = self.collector.stages.generation if self.collector.stages else 0
        return (int(seq or 0), stages)

    def render(self) -> bytes:
        version = self.version()
        cached = self._cached
        if cached is not None and cached[0] == version:
            return cached[1]
        return self._build(version)

    def refresh(self) -> bytes:
        return self._build(self.version())

    def _build(self, version: tuple[int, int]) -> bytes:
        # the version is read before the build: a change during the build makes the next scrape rebuild
        with self._lock:
            body = render_text(self.collector.collect())
            self._cached = (version, body)
        return body


def go_float(value: float) -> str:
    """Format a sample value the way Go (and so Prometheus itself) does."""
    return str(_untyped_float_to_go(value))  # type: ignore[no-untyped-call]


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def render_text(families: Iterable[Metric]) -> bytes:
    """The Prometheus text format (0.0.4) exactly as ``prometheus_client.generate_latest`` writes it for
    gauges, counters and info metrics, without its per-sample name validation (our names are fixed and
    valid), which dominates the cost at tens of thousands of series."""
    out: list[str] = []
    for metric in families:
        name, mtype = metric.name, metric.type
        if mtype == "counter":
            name += "_total"
        elif mtype == "info":
            name, mtype = name + "_info", "gauge"
        elif mtype not in ("gauge",):
            raise ValueError(f"render_text does not handle {mtype} metrics ({metric.name})")
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n")
        for sample in metric.samples:
            if sample.labels:
                labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(sample.labels.items()))
                out.append(f"{sample.name}{{{labels}}} {go_float(sample.value)}\n")
            else:
                out.append(f"{sample.name} {go_float(sample.value)}\n")
    return "".join(out).encode()


def _ts(value: Any) -> float:
    from agent.incidents import utc

    return float(utc(value).timestamp())
