"""Prometheus exposition: a custom collector that builds every metric family from the state store on
each build, so a system, a feature or a group that disappears stops being exported, and every
replica serves the same numbers.

Labels are few and bounded. A label value over ``LABEL_VALUE_MAX`` characters is stored and exported
as its first characters plus ``~`` and a short SHA-256 digest (:func:`bound_label_value`), so a
long category never breaks the store's key. Each system has ONE series budget
(``server.max_series_per_system``) across all its families; what does not fit is counted in
``aims_series_dropped{system,family}``. What is kept first (:func:`_rank`):

1. system-level series (check health, stages, window sizes, dataset and prediction drift,
   performance, data-quality counts, fairness gaps, open incidents), whose number the config fixes;
2. decisions in breach or warning;
3. the per-feature series of drifted features;
4. the other decisions;
5. what is left is shared evenly between the per-feature series of the other features (by name)
   and the per-group fairness series (largest groups first), the groups cut being summed into one
   ``group="(other)"`` series (rows, and their count-weighted selection rate).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go
from sqlalchemy import func, select

from agent import __version__
from agent.decisions import STATES
from agent.schema import CheckStage, CheckStat, Decision, Incident, LedgerHead, MetricValue, OutboxMessage
from agent.store import Store
from config.errors import AimsError
from config.model import SystemConfig

log = logging.getLogger("aims.exposition")
PREFIX = "aims_"
LABEL_VALUE_MAX = 128  # characters of one label value, digest included
LABELS_KEY_MAX = 400  # the width of metric_values.labels, the canonical JSON of a series' labels
_DIGEST = 8  # hex characters of SHA-256 after the `~` of a shortened value
_FALLBACK_LIMITS = (64, 32, 16)  # shorter bounds, tried in turn only if the JSON still does not fit
OTHER_GROUP = "(other)"
MAX_STALE_S = 10.0  # while a rebuild is coming, a scrape may serve the last body for this long at most

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
# stored family -> exported name, where Prometheus naming rules want another name (a gauge may not end
# in `_count`, which is reserved for histograms and summaries)
EXPORTED = {"fairness_group_count": "fairness_group_rows"}
PER_FEATURE = ("feature_drift_score", "feature_drift_detected", "data_quality_missing_share")
PER_GROUP = ("fairness_group_count", "fairness_group_rate")
# families each judging phase writes (with late labels a window is judged twice; see agent.evaluate)
_LABEL_FAMILIES = {"window_labelled_rows", "performance_metric"}
_FAIRNESS_FAMILIES = {"fairness_metric", *PER_GROUP}


@dataclass(frozen=True)
class Family:
    name: str  # exported, without the prefix (and without `_total` for counters)
    help: str
    labels: tuple[str, ...]  # after `system`
    kind: Literal["gauge", "counter"] = "gauge"


SPECS: dict[str, Family] = {
    **{k: Family(EXPORTED.get(k, k), h, lbl) for k, (h, lbl) in FAMILIES.items()},
    "check_runs": Family("check_runs", "Check runs per system and check.", ("check",), "counter"),
    "check_failures": Family("check_failures", "Failed check runs per system and check.", ("check",), "counter"),
    "check_last_success_timestamp_seconds": Family(
        "check_last_success_timestamp_seconds", "Unix time of the last successful run of the check.", ("check",)),
    "check_last_run_timestamp_seconds": Family(
        "check_last_run_timestamp_seconds", "Unix time of the last run of the check.", ("check",)),
    "check_duration_seconds": Family("check_duration_seconds", "Duration of the last run of the check.",
                                     ("check",)),
    "decision_state": Family("decision_state", "Current decision per system, check and subject (1 for the "
                             "current state).", ("check", "subject", "state")),
    "incidents_open": Family("incidents_open", "Open AI incidents per system and kind.", ("kind",)),
    "check_stage_duration_seconds": Family(
        "check_stage_duration_seconds", "Duration of each stage (read, metrics, commit) of the system's last "
        "check, whichever replica ran it.", ("stage",)),
    "check_stage_success": Family(
        "check_stage_success", "1 if the stage of the system's last check succeeded, 0 if it failed "
        "(whichever replica ran it).", ("stage",)),
}
_ORDER = {k: i for i, k in enumerate(SPECS)}

Sample = tuple[str, tuple[str, ...], float]  # family key, label values after `system`, value


# -- bounded labels ------------------------------------------------------------------------------------
def bound_label_value(value: str, limit: int = LABEL_VALUE_MAX) -> str:
    """``value`` itself when it has at most ``limit`` characters, else its first characters plus ``~``
    and 8 hex characters of its SHA-256 (``limit`` characters in all): distinct long values stay
    distinct, and the same value always gets the same label."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    keep = max(0, limit - _DIGEST - 1)
    return f"{value[:keep]}~{digest}"


def _canonical(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def series_key(labels: Mapping[str, object]) -> str:
    """The stored form of a series' extra labels: canonical JSON of the bounded values, never longer
    than ``LABELS_KEY_MAX`` (the JSON is never cut: values are bounded harder until it fits)."""
    raw = {str(k): str(v) for k, v in labels.items()}
    for limit in (LABEL_VALUE_MAX, *_FALLBACK_LIMITS):
        key = _canonical({k: bound_label_value(v, limit) for k, v in raw.items()})
        if len(key) <= LABELS_KEY_MAX:
            return key
    # digests only: 9 characters per value, whatever the escaping of the original
    return _canonical({k: bound_label_value(v, 0) if len(v) > _DIGEST + 1 else v for k, v in raw.items()})


def label_forms(value: str) -> set[str]:
    """Every form :func:`series_key` may have stored ``value`` under."""
    return {value, *(bound_label_value(value, n) for n in (LABEL_VALUE_MAX, *_FALLBACK_LIMITS, 0))}


def families_of_phase(system: SystemConfig, phase: str) -> set[str]:
    """The stored families a judging phase owns: its window replaces all of them, so a family the
    window no longer produces (a check switched off, too few rows) stops being exported."""
    if phase == "all":
        return set(FAMILIES)
    from agent.evaluate import LABEL_METRICS

    fairness_on_labels = system.checks.fairness.metric in LABEL_METRICS
    label_owned = _LABEL_FAMILIES | (_FAIRNESS_FAMILIES if fairness_on_labels else set())
    return label_owned if phase == "labels" else set(FAMILIES) - label_owned


# -- the series budget ---------------------------------------------------------------------------------
@dataclass
class Bundle:
    """Series kept or cut together (a feature's drift score, flag and missing share; a group's rows and
    rates; a decision's states)."""

    rank: tuple[Any, ...]
    samples: list[Sample]
    pool: Literal["ranked", "features", "groups"] = "ranked"
    group: tuple[str, str] | None = None  # (sensitive, group) of a per-group bundle
    rows: float = 0.0  # of a per-group bundle


@dataclass
class Budgeted:
    kept: list[Sample] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # family key -> series cut


def fit_budget(bundles: Sequence[Bundle], cap: int) -> Budgeted:
    """Keep at most ``cap`` series. Ranked bundles first, in rank order while they fit; what is left is
    shared evenly between the other features' bundles (by name) and the per-group bundles (largest
    groups first), a share one side does not need going to the other. The groups of a sensitive
    feature that were cut become one ``(other)`` group, for which two slots per sensitive feature are
    set aside as soon as any group is cut."""
    out = Budgeted()
    left = cap

    def take(b: Bundle, room: int) -> int:
        """Keep ``b`` if it fits in ``room`` (and in what is left); the room that remains."""
        nonlocal left
        if len(b.samples) <= min(room, left):
            out.kept.extend(b.samples)
            left -= len(b.samples)
            return room - len(b.samples)
        for fam, _, _ in b.samples:
            out.dropped[fam] += 1
        return room

    ordered = sorted(bundles, key=lambda b: b.rank)
    for b in ordered:
        if b.pool == "ranked":
            take(b, left)
    features = [b for b in ordered if b.pool == "features"]
    groups = [b for b in ordered if b.pool == "groups"]
    need_f, need_g = (sum(len(b.samples) for b in pool) for pool in (features, groups))
    if need_f + need_g <= left or need_f <= left // 2:
        share_f = need_f
    elif need_g <= left - left // 2:
        share_f = left - need_g
    else:
        share_f = left // 2
    room = share_f
    for b in features:
        room = take(b, room)
    if need_g <= left:
        for b in groups:
            take(b, left)
        return out
    specs = sorted({b.group[0] for b in groups if b.group})
    reserved = min(left, 2 * len(specs))
    room = left - reserved
    cut: dict[str, list[Bundle]] = defaultdict(list)
    for b in groups:
        assert b.group is not None
        before = room
        room = take(b, room)
        if room == before:
            cut[b.group[0]].append(b)
    for spec in specs:
        if cut[spec]:
            other = _other_group(spec, cut[spec])
            if len(other) <= left:  # a synthetic series: not counted as dropped when it does not fit
                out.kept.extend(other)
                left -= len(other)
    return out


def _other_group(spec: str, cut: Sequence[Bundle]) -> list[Sample]:
    samples: list[Sample] = [("fairness_group_count", (spec, OTHER_GROUP), sum(b.rows for b in cut))]
    # a selection rate is over all of a group's rows, so the count-weighted mean is the rate of the
    # union; true and false positive rates are over label classes the store does not count per group
    rate_sum = weight = 0.0
    for b in cut:
        for fam, labels, value in b.samples:
            if fam == "fairness_group_rate" and labels[2] == "selection_rate":
                rate_sum += value * b.rows
                weight += b.rows
    if weight > 0:
        samples.append(("fairness_group_rate", (spec, OTHER_GROUP, "selection_rate"), rate_sum / weight))
    return samples


# -- the collector -----------------------------------------------------------------------------------
@dataclass
class _Snapshot:
    values: list[tuple[str, str, str, float]]
    stats: list[CheckStat]
    stages: list[tuple[str, str, float, bool]]
    decisions: list[tuple[str, str, str, str]]
    incidents: list[tuple[str, str, int]]
    outbox: list[tuple[str, str, int, Any]]
    outbox_failing: list[tuple[str, str, int]]  # pending messages whose last attempt failed, by error kind
    outbox_given_up: list[tuple[str, int]]  # messages ever given up on, per sink


class StateCollector(Collector):
    """Reads the latest values, counters, decisions and stage outcomes from the store on each build.

    ``systems`` (the configured ones) filters the export: a system removed from the config, a feature
    no longer monitored, or a sensitive feature no longer judged stops being exported at once, before
    any window replaces its stored series. Without it (a bare store) everything stored is exported.
    """

    def __init__(self, store: Store, *, max_series_per_system: int = 500,
                 systems: Sequence[SystemConfig] | None = None) -> None:
        self.store = store
        self.cap = max_series_per_system
        self.systems = {s.id: s for s in systems} if systems is not None else None
        self._allowed = {s.id: _allowed_labels(s) for s in systems} if systems is not None else {}

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: families are built per scrape

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        info = InfoMetricFamily(f"{PREFIX}build", "aims-agent build information.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        with self.store.session() as s:
            snap = self._read(s)
        per_system, undecodable = self._bundles(snap)
        families = {k: self._family(spec) for k, spec in SPECS.items()}
        dropped = GaugeMetricFamily(f"{PREFIX}series_dropped", "Series of the system not exported because of "
                                    "its series budget (server.max_series_per_system), per family.",
                                    labels=["system", "family"])
        for system_id in sorted(per_system):
            fitted = fit_budget(per_system[system_id], self.cap)
            for fam, labels, value in sorted(fitted.kept, key=lambda x: (_ORDER[x[0]], x[1])):
                families[fam].add_metric([system_id, *labels], value)
            for fam, n in sorted(fitted.dropped.items()):
                dropped.add_metric([system_id, SPECS[fam].name], float(n))
        bad = GaugeMetricFamily(f"{PREFIX}series_undecodable", "Stored series skipped at the last build of "
                                "this exposition because their labels could not be decoded.", labels=["system"])
        for system_id, n in sorted(undecodable.items()):
            bad.add_metric([system_id], float(n))
        yield from (families[k] for k in FAMILIES)
        yield dropped
        yield bad
        yield from (families[k] for k in SPECS if k not in FAMILIES)
        yield from self._outbox(snap.outbox, snap.outbox_failing, snap.outbox_given_up)
        g = GaugeMetricFamily(f"{PREFIX}scrape_duration_seconds", "Time the last build of this exposition from "
                              "the store took.")
        g.add_metric([], time.perf_counter() - t0)
        yield g

    @staticmethod
    def _family(spec: Family) -> GaugeMetricFamily | CounterMetricFamily:
        cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        return cls(f"{PREFIX}{spec.name}", spec.help, labels=["system", *spec.labels])

    @staticmethod
    def _read(s: Any) -> _Snapshot:
        return _Snapshot(
            values=[tuple(r) for r in s.execute(select(MetricValue.system_id, MetricValue.family,
                                                       MetricValue.labels, MetricValue.value)).all()],
            stats=list(s.execute(select(CheckStat)).scalars()),
            stages=[tuple(r) for r in s.execute(select(CheckStage.system_id, CheckStage.stage,
                                                       CheckStage.duration_s, CheckStage.ok)).all()],
            decisions=[tuple(r) for r in s.execute(select(Decision.system_id, Decision.check, Decision.subject,
                                                          Decision.state)).all()],
            incidents=[tuple(r) for r in s.execute(
                select(Incident.system_id, Incident.kind, func.count()).where(Incident.status != "resolved")
                .group_by(Incident.system_id, Incident.kind)).all()],
            outbox=[tuple(r) for r in s.execute(
                select(OutboxMessage.sink, OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
                .group_by(OutboxMessage.sink, OutboxMessage.status)).all()],
            outbox_failing=[tuple(r) for r in s.execute(
                select(OutboxMessage.sink, OutboxMessage.error_kind, func.count())
                .where(OutboxMessage.status == "pending", OutboxMessage.error_kind.is_not(None))
                .group_by(OutboxMessage.sink, OutboxMessage.error_kind)).all()],
            outbox_given_up=[tuple(r) for r in s.execute(
                select(OutboxMessage.sink, func.count()).where(OutboxMessage.dead_at.is_not(None))
                .group_by(OutboxMessage.sink)).all()],
        )

    def _exported(self, system_id: str) -> bool:
        return self.systems is None or system_id in self.systems

    def _bundles(self, snap: _Snapshot) -> tuple[dict[str, list[Bundle]], Counter[str]]:
        out: dict[str, list[Bundle]] = defaultdict(list)
        undecodable: Counter[str] = Counter()
        features: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
        groups: dict[str, dict[tuple[str, str], list[Sample]]] = defaultdict(lambda: defaultdict(list))
        drifted: dict[str, set[str]] = defaultdict(set)
        for system_id, family, raw, value in snap.values:
            if family not in FAMILIES or not self._exported(system_id):
                continue
            labels = _decode(raw)
            if labels is None:
                undecodable[system_id] += 1
                continue
            if not self._still_monitored(system_id, family, labels):
                continue
            sample: Sample = (family, tuple(labels.get(n, "") for n in FAMILIES[family][1]), float(value))
            if family in PER_FEATURE:
                features[system_id][labels.get("feature", "")].append(sample)
                if family == "feature_drift_detected" and float(value) >= 1.0:
                    drifted[system_id].add(labels.get("feature", ""))
            elif family in PER_GROUP:
                groups[system_id][(labels.get("sensitive", ""), labels.get("group", ""))].append(sample)
            else:
                out[system_id].append(Bundle((0, _ORDER[family], sample[1]), [sample]))
        for system_id, by_feature in features.items():
            for feat, samples in by_feature.items():
                if feat in drifted[system_id]:
                    out[system_id].append(Bundle((2, feat), samples))
                else:
                    out[system_id].append(Bundle((4, feat), samples, pool="features"))
        for system_id, by_group in groups.items():
            for (spec, group), samples in by_group.items():
                rows = next((v for f, _, v in samples if f == "fairness_group_count"), 0.0)
                out[system_id].append(Bundle((5, -rows, spec, group), samples, pool="groups", group=(spec, group),
                                              rows=rows))
        for st in snap.stats:
            if self._exported(st.system_id):
                out[st.system_id].append(Bundle((0, -1, st.check), _check_samples(st)))
        for system_id, stage, seconds, ok in snap.stages:
            if self._exported(system_id):
                out[system_id].append(Bundle((0, -1, "~stage", stage), [
                    ("check_stage_duration_seconds", (stage,), float(seconds)),
                    ("check_stage_success", (stage,), 1.0 if ok else 0.0)]))
        for system_id, check, subject, current in snap.decisions:
            if self._exported(system_id):
                tier = 1 if current in ("breach", "warning") else 3
                out[system_id].append(Bundle((tier, check, subject), [
                    ("decision_state", (check, subject, state), 1.0 if current == state else 0.0)
                    for state in STATES]))
        for system_id, kind, n in snap.incidents:
            if self._exported(system_id):
                out[system_id].append(Bundle((0, -1, "~incidents", kind), [("incidents_open", (kind,), float(n))]))
        return out, undecodable

    def _still_monitored(self, system_id: str, family: str, labels: Mapping[str, str]) -> bool:
        """False for a drift series of a feature, or a fairness series of a sensitive feature, that the
        system's current config no longer judges (the missing share covers every column of a window,
        so it is left to the next window to replace)."""
        allowed = self._allowed.get(system_id)
        if allowed is None:
            return True
        features, specs = allowed
        if family in _FAIRNESS_FAMILIES:
            return labels.get("sensitive", "") in specs
        if family in ("feature_drift_score", "feature_drift_detected"):
            return labels.get("feature", "") in features
        return True

    @staticmethod
    def _outbox(rows: Sequence[tuple[str, str, int, Any]], failing_rows: Sequence[tuple[str, str, int]],
                dead_rows: Sequence[tuple[str, int]]) -> Iterator[Metric]:
        pending = GaugeMetricFamily(f"{PREFIX}outbox_pending", "Notifications waiting for delivery per sink.",
                                    labels=["sink"])
        oldest = GaugeMetricFamily(f"{PREFIX}outbox_oldest_pending_timestamp_seconds",
                                   "Creation time of the oldest undelivered notification per sink.", labels=["sink"])
        failing = GaugeMetricFamily(f"{PREFIX}outbox_failing", "Notifications waiting for delivery whose last "
                                    "attempt failed, per sink and error (retryable, unexpected).",
                                    labels=["sink", "error"])
        dead_now = GaugeMetricFamily(f"{PREFIX}outbox_dead", "Notifications given up on and neither requeued nor "
                                     "discarded yet (they hold the later ones of their ticket) per sink.",
                                     labels=["sink"])
        done = CounterMetricFamily(f"{PREFIX}notifications_delivered", "Notifications delivered per sink.",
                                   labels=["sink"])
        dead = CounterMetricFamily(f"{PREFIX}notifications_failed", "Notifications given up on (permanent "
                                   "errors, or still failing after agent.outbox.retry_for) per sink.", labels=["sink"])
        for sink, status, n, first in sorted(rows, key=lambda r: (r[0], r[1])):
            if status == "pending":
                pending.add_metric([sink], float(n))
                oldest.add_metric([sink], _ts(first))
            elif status == "delivered":
                done.add_metric([sink], float(n))
            elif status == "dead":
                dead_now.add_metric([sink], float(n))
        for sink, kind, n in sorted(failing_rows):
            failing.add_metric([sink, str(kind)], float(n))
        # counted by when they were first given up on, so requeueing one never makes the counter go down
        for sink, n in sorted(dead_rows):
            dead.add_metric([sink], float(n))
        yield from (pending, oldest, failing, dead_now, done, dead)


def _check_samples(st: CheckStat) -> list[Sample]:
    lbl = (st.check,)
    out: list[Sample] = [("check_runs", lbl, float(st.runs)), ("check_failures", lbl, float(st.failures))]
    if st.last_success_at is not None:
        out.append(("check_last_success_timestamp_seconds", lbl, _ts(st.last_success_at)))
    if st.last_run_at is not None:
        out.append(("check_last_run_timestamp_seconds", lbl, _ts(st.last_run_at)))
    out.append(("check_duration_seconds", lbl, float(st.last_duration_s)))
    return out


def _allowed_labels(system: SystemConfig) -> tuple[set[str], set[str]]:
    """The feature and sensitive label values (in every stored form) the system's config judges."""
    features = {f for c in system.schema_.features for f in label_forms(c)}
    fairness = system.checks.fairness
    specs = {f for spec in fairness.sensitive for f in label_forms(spec)} if fairness.enabled else set()
    return features, specs


def _decode(raw: str) -> dict[str, str] | None:
    """The labels of a stored series, or None when they are not a JSON object of strings (a row written
    by an older version that cut the JSON, or altered by hand): such a row is skipped and counted."""
    try:
        labels = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return None
    return labels


# -- the cached /metrics body --------------------------------------------------------------------------
class Exposition:
    """The /metrics body, rebuilt from the store only when the state changed since the last build.

    Every change the exposition shows (check runs, decisions, incidents, notifications, config loads)
    appends an evidence record in the same transaction, so the ledger head is the state's version,
    together with the stage table's write count: a scrape costs one small query until either moves.
    ``refresh()`` rebuilds unconditionally (the service calls it once a minute); checks that commit state
    run under ``changing()``, which rebuilds once when the last of them ends, so scrapes rarely pay.

    While a rebuild is coming (checks are committing under ``changing()``, or a build is running) a
    scrape serves the last body instead of building one itself, for at most ``MAX_STALE_S`` seconds after
    it first saw the state move; otherwise a scrape rebuilds whenever the version moved. So a scrape waits
    for a build only when nothing else will make one, is never more than ``MAX_STALE_S`` behind the
    store, and what a finished check committed is served.
    """

    def __init__(self, store: Store, collector: StateCollector) -> None:
        self.store = store
        self.collector = collector
        self.builds = 0
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int], bytes] | None = None
        self._changing = 0  # checks committing now (a rebuild follows the last)
        self._ending = 0  # works that ended and whose rebuild is under way
        self._stale_since: float | None = None  # when a scrape first saw the store ahead of the body
        self.max_stale_s = MAX_STALE_S

    def version(self) -> tuple[int, int, int]:
        seq = select(LedgerHead.seq).where(LedgerHead.id == 1).scalar_subquery()
        stages = select(func.count()).select_from(CheckStage).scalar_subquery()
        writes = select(func.coalesce(func.sum(CheckStage.generation), 0)).scalar_subquery()
        with self.store.session() as s:
            row = s.execute(select(seq, stages, writes)).one()
        return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def render(self) -> bytes:
        version = self.version()
        cached = self._cached
        if cached is not None and cached[0] == version:
            return cached[1]
        if cached is not None and self._rebuild_coming():
            now = time.monotonic()
            if self._stale_since is None:
                self._stale_since = now
            if now - self._stale_since < self.max_stale_s:
                return cached[1]
        return self._build(version)

    def _rebuild_coming(self) -> bool:
        return bool(self._changing or self._ending or self._lock.locked())

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Around work that commits state (a system's checks): scrapes meanwhile serve the last body
        (within ``max_stale_s``) instead of each rebuilding it. When the last such work ends, the body is
        rebuilt in its thread before it returns (if the state moved), so what a check committed is
        served as soon as the check is over; checks ending together share that one build."""
        with self._count_lock:
            self._changing += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._changing -= 1
                last = self._changing == 0
                self._ending += last  # no moment between the work's end and its rebuild without one coming
            if last:
                try:
                    self._rebuild_if_moved()
                finally:
                    with self._count_lock:
                        self._ending -= 1

    def refresh(self) -> bytes:
        return self._build(self.version())

    def _rebuild_if_moved(self) -> None:
        try:
            version = self.version()
            cached = self._cached
            if cached is None or cached[0] != version:
                self._build(version)
        except AimsError as exc:
            # the next scrape rebuilds (the version moved), so nothing is lost but the head start
            log.error("building /metrics failed: %s", exc)

    def _build(self, version: tuple[int, int, int]) -> bytes:
        # the version is read before the build: a change during the build makes the next scrape rebuild
        with self._lock:
            body = render_text(self.collector.collect())
            self._cached = (version, body)
            self._stale_since = None
            self.builds += 1
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
