"""The agent's core loop for one system: collect due windows, judge them, and record the outcome.

Windows are tumbling and aligned to ``window.size``; one is judged once it has ended (plus
``window.lateness``). The watermark, the check run, the decisions, the incidents with their outbox
messages, the exported series and the evidence records of a window commit in ONE transaction, so a
crash before the commit re-judges the window and a crash after it never judges it again: no window
is skipped or counted twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from agent.decisions import Streaks, Verdict, step
from agent.evidence import ledger_from_config
from agent.exposition import families_of_phase, series_key
from agent.incidents import IncidentChange, IncidentManager, Outbox, utc
from agent.links import IncidentLinks
from agent.playbooks import Playbooks
from agent.schema import CheckRun, CheckStat, Decision, EvidenceRecord, MetricValue, Watermark
from agent.stages import StageRecorder
from agent.store import Store
from config.errors import AimsError, ConfigError, InputError, Problem, SourceError, StateStoreError
from config.loader import config_digest
from config.model import AgentConfig, LocalFolderSinkConfig, PluginSourceConfig, SystemConfig
from connectors.base import AggregatingSource, ReportsRejected, Sink, Source
from connectors.registry import SINK_GROUP, SOURCE_GROUP, load_plugin

if TYPE_CHECKING:
    import pandas as pd

    from agent.evaluate import Phase, SystemReference, WindowEvaluation


def labels_delayed(system: SystemConfig) -> bool:
    """Whether label-based checks wait for late ground truth (a second, later judgment of each window)."""
    lab = system.labels
    return lab is not None and (lab.source is not None or lab.max_delay.total_seconds() > 0)


# The judging side (agent.evaluate, agent.reference, agent.window_digest: pandas, numpy, scipy, pyarrow)
# is imported where a window is judged, not here: the service's resident process imports this module
# for its API and outbox, and stays small because it leaves the judging to a worker (agent.worker).

log = logging.getLogger("aims.runner")
Clock = Callable[[], datetime]
StageHook = Callable[[str, str, float, bool], None]  # system id, stage, seconds, succeeded
COLLECTION_OPEN_AFTER = 3
#: The watermark of the greatest source id counted (id mode), beside the time watermark of each stream.
ID_STREAM = "predictions_id"


def utcnow() -> datetime:
    return datetime.now(UTC)


def align_down(ts: datetime, size: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = (ts - epoch) // size
    return epoch + n * size


@dataclass
class RunOutcome:
    system_id: str
    window_start: datetime
    window_end: datetime
    status: str  # ok | warning | breach | insufficient_data | failed | skipped (another replica)
    rows: int = 0
    error: str | None = None
    changes: list[IncidentChange] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def build_source(system: SystemConfig, which: str, base_dir: Path | None, store: Store | None = None) -> Source:
    ts_column = system.schema_.timestamp_column
    if which == "reference":
        cfg = system.reference
    elif which == "labels":
        assert system.labels is not None and system.labels.source is not None
        cfg = system.labels.source
        ts_column = system.labels.timestamp_column or ts_column
    else:
        cfg = system.source
    cls = load_plugin(SOURCE_GROUP, cfg.type)
    if cls is None:
        raise ConfigError([Problem(f"systems.{system.id}.{which}.type", f"no source plugin {cfg.type!r}")])
    typed: Any = cfg
    model: Any = getattr(cls, "config_model", None)
    if isinstance(cfg, PluginSourceConfig) and model is not None:
        # a third-party source gets its own typed config (the loader validated it already)
        try:
            typed = model.model_validate(cfg.model_dump())
        except ValidationError as exc:
            raise ConfigError([Problem(f"systems.{system.id}.{which}", str(exc).splitlines()[0])]) from exc
    # sources take what they need of this context (the cloudevents source reads the agent's own store)
    source: Source = cls(typed, timestamp_column=ts_column, base_dir=base_dir, store=store)
    return source


def build_sinks(cfg: AgentConfig, base_dir: Path | None) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    problems: list[Problem] = []
    for name, sink_cfg in cfg.sinks.items():
        cls = load_plugin(SINK_GROUP, sink_cfg.type)
        if cls is None:
            problems.append(Problem(f"sinks.{name}.type", f"no sink plugin {sink_cfg.type!r}"))
            continue
        model: Any = getattr(cls, "config_model", None)
        typed = sink_cfg if isinstance(sink_cfg, LocalFolderSinkConfig) or model is None else model.model_validate(
            sink_cfg.model_dump())
        sinks[name] = cls(typed, base_dir=base_dir, name=name)
    if problems:
        raise ConfigError(problems)
    return sinks


class Agent:
    """Everything a running agent holds: config, store, sources, sinks, ledger, incidents, outbox."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        base_dir: Path | None = None,
        store: Store | None = None,
        clock: Clock = utcnow,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        self.clock = clock
        self.store = store or Store(cfg.agent.state_url.get_secret_value())
        self.ledger = ledger_from_config(cfg.agent.evidence, base_dir)
        playbooks = Playbooks(base_dir=base_dir, organisation=cfg.agent.playbooks_file)
        self.incidents = IncidentManager(self.ledger, playbooks, links=IncidentLinks.from_settings(cfg.agent))
        self.sinks: dict[str, Sink] = dict(sinks) if sinks is not None else build_sinks(cfg, base_dir)
        self.outbox = Outbox(self.store, self.ledger, self.sinks, settings=cfg.agent.outbox)
        self._sources: dict[str, Source] = {}
        self._references: dict[str, SystemReference] = {}
        # what each system's reference was read from, for check-run evidence: path@sha256 for files
        self.reference_names: dict[str, str] = {}
        self.config_digest = config_digest(cfg)
        # per-stage outcomes go to the store, so every replica (and every process) serves the same ones
        self.stage_hook: StageHook | None = StageRecorder(self.store)

    # -- life cycle ---------------------------------------------------------------------------------
    def record_config_loaded(self, source: str, *, only_if_changed: bool = False) -> None:
        """Record the configuration in force (``config_loaded``), then any model version it changed.

        The service records every start. ``only_if_changed`` is for one-shot runs (``check`` from cron):
        they record a load only when the configuration differs from the last one recorded, so a job
        every five minutes does not add a record each time, yet a changed config or model version is
        recorded (and a model change raised) on the first run that sees it.
        """
        with self.store.transaction() as s:
            last = s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "config_loaded")
                             .order_by(EvidenceRecord.seq.desc()).limit(1)).scalar_one_or_none()
            if not (only_if_changed and last is not None and last.payload.get("config_digest") == self.config_digest):
                self.ledger.append(s, "config_loaded", {
                    "config_digest": self.config_digest, "file": source,
                    "systems": [{"id": x.id, "model": f"{x.model.name} {x.model.version}", "owner": x.owner.team,
                                 "role": x.role.value, "risk_tier": x.risk_tier.value,
                                 "lifecycle_stage": x.lifecycle_stage.value} for x in self.cfg.systems],
                }, now=self.clock())
        from agent.risk import detect_model_changes

        # a new model version is a re-assessment trigger (ISO 42001 A.5.2, A.6.2.5)
        detect_model_changes(self.store, self.cfg, ledger=self.ledger, incidents=self.incidents, now=self.clock())

    def record_reassessment_triggers(self, now: datetime | None = None) -> int:
        """After check runs: raise sustained drift and new bias breaches as impact re-assessment triggers
        (ISO 42001 A.5.2), each once. Returns how many were raised."""
        from agent.risk import detect_reassessment_triggers

        return len(detect_reassessment_triggers(self.store, self.cfg, self.ledger, self.incidents,
                                                now or self.clock()))

    def close(self) -> None:
        for src in self._sources.values():
            src.close()
        self.store.close()

    def source(self, system: SystemConfig, which: str = "source") -> Source:
        key = f"{system.id}\x1f{which}"
        if key not in self._sources:
            self._sources[key] = build_source(system, which, self.base_dir, self.store)
        return self._sources[key]

    def reference(self, system: SystemConfig) -> SystemReference:
        ref = self._references.get(system.id)
        if ref is None:
            from agent.evaluate import SystemReference
            from agent.reference import read_reference

            src = build_source(system, "reference", self.base_dir, self.store)
            try:
                frame, name = read_reference(src, columns=self._columns(system))
            finally:
                src.close()
            if frame.empty:
                raise InputError(f"system {system.id}: the reference data has no rows")
            ref = SystemReference.build(system, frame, aggregates=self.aggregated(system))
            self._references[system.id] = ref
            self.reference_names[system.id] = name
        return ref

    def aggregated(self, system: SystemConfig) -> bool:
        """Whether the system's windows are judged from aggregates computed by its source (pushdown)."""
        return bool(getattr(system.source, "pushdown", False)) and isinstance(self.source(system), AggregatingSource)

    @staticmethod
    def _columns(system: SystemConfig) -> list[str]:
        sc = system.schema_
        cols = [sc.timestamp_column, *sc.features, *sc.sensitive]
        if sc.id_column:
            cols.append(sc.id_column)
        if sc.prediction:
            cols.append(sc.prediction.column)
        if sc.label:
            cols.append(sc.label)
        return list(dict.fromkeys(cols))

    # -- windows ------------------------------------------------------------------------------------
    def watermark(self, system: SystemConfig, stream: str = "predictions") -> datetime | None:
        with self.store.session() as s:
            row = s.get(Watermark, (system.id, stream))
            return datetime.fromisoformat(row.value) if row else None

    def due_windows(self, system: SystemConfig, now: datetime, stream: str = "predictions") -> list[
            tuple[datetime, datetime]]:
        """Windows ready to judge: ended (plus lateness, plus the label delay for the labels stream)."""
        size, lateness = system.window.size, system.window.lateness
        if stream == "labels" and system.labels is not None:
            lateness += system.labels.max_delay
        last_closed_end = align_down(now - lateness, size)
        wm = self.watermark(system, stream)
        if wm is not None:
            start = wm
        elif system.window.start is not None:
            start = align_down(system.window.start, size)
        else:
            start = last_closed_end - size
        out: list[tuple[datetime, datetime]] = []
        while start + size <= last_closed_end and len(out) < system.window.max_catch_up:
            out.append((start, start + size))
            start += size
        return out

    def run_system(self, system_id: str, now: datetime | None = None) -> list[RunOutcome]:
        system = self.cfg.system(system_id)
        now = now or self.clock()
        outcomes = []
        delayed = labels_delayed(system)
        for start, end in self.due_windows(system, now):
            outcome = self.run_window(system, start, end, now, phase="predictions" if delayed else "all")
            outcomes.append(outcome)
            if outcome.status == "failed":
                return outcomes  # the same window is tried again next tick
        if delayed:
            for start, end in self.due_windows(system, now, "labels"):
                outcome = self.run_window(system, start, end, now, phase="labels")
                outcomes.append(outcome)
                if outcome.status == "failed":
                    break
        return outcomes

    def record_failure(self, system_id: str, exc: AimsError, now: datetime | None = None) -> RunOutcome | None:
        """Record a check of the system's first due window as failed by ``exc`` (its worker died): counted
        in the check statistics, in the ledger, and towards a collection incident. None when nothing was due."""
        system = self.cfg.system(system_id)
        now = now or self.clock()
        due = self.due_windows(system, now)
        if not due:
            return None
        return self._failed(system, due[0][0], due[0][1], now, exc, 0.0)

    def anything_due(self, system_id: str, now: datetime | None = None) -> bool:
        """Whether the system has a window to judge now (the service asks before waking its worker)."""
        system = self.cfg.system(system_id)
        now = now or self.clock()
        return bool(self.due_windows(system, now) or (labels_delayed(system)
                                                      and self.due_windows(system, now, "labels")))

    def run_all(self, now: datetime | None = None) -> list[RunOutcome]:
        out: list[RunOutcome] = []
        for system in self.cfg.systems:
            out.extend(self.run_system(system.id, now))
        return out

    def run_window(self, system: SystemConfig, start: datetime, end: datetime, now: datetime,
                   phase: Phase = "all") -> RunOutcome:
        from agent.evaluate import evaluate_aggregates, evaluate_window, pushdown_plan
        from agent.window_digest import aggregates_digest, input_digest

        t0 = time.perf_counter()
        ids: tuple[Any, Any] | None = None
        try:
            src = self.source(system)
            by_id: Any = src if self.id_mode(system) else None
            if by_id is not None:
                # what this window counts: its rows that exist now, and rows that arrived after their own
                # window was judged (see docs/connectors.md, "id mode")
                ids = self._id_range(system, start, phase, by_id)
            if phase != "labels" and self.aggregated(system):
                assert isinstance(src, AggregatingSource)
                with self._stage(system.id, "read"):
                    ref = self.reference(system)
                    wanted = set(self._columns(system))
                    present = [c for c in src.available_columns() if c in wanted]
                    agg = src.summarise_window(start, end, pushdown_plan(system, ref, present, phase),
                                               **({"ids": ids} if ids is not None else {}))

                def read(columns: Sequence[str]) -> pd.DataFrame:  # only the columns a test needs all values of
                    return self._read(src, start, end, list(columns), ids)

                with self._stage(system.id, "metrics"):
                    ev = evaluate_aggregates(system, ref, agg, present, read, phase)
                    digest = aggregates_digest(agg)
            else:
                with self._stage(system.id, "read"):
                    ref = self.reference(system)
                    df = self._read(src, start, end, self._columns(system), ids)
                    # records the source skipped as unreadable are judged as data quality, not a failed window
                    rejected = src.rejected() if isinstance(src, ReportsRejected) else []
                    if phase == "labels":
                        df = self._join_labels(system, df, start, end)
                with self._stage(system.id, "metrics"):
                    ev = evaluate_window(system, ref, df, phase, rejected)
                    digest = input_digest(df, columns=self._columns(system),
                                          timestamp_column=system.schema_.timestamp_column)
            if by_id is not None and ids is not None:
                late = by_id.count_late(start, ids)
                ev.results["id_range"] = list(ids)
                ev.results["late_rows"] = late
                ev.series.append(("window_late_rows", {}, float(late)))
        except (SourceError, InputError) as exc:
            return self._failed(system, start, end, now, exc, time.perf_counter() - t0)
        duration = time.perf_counter() - t0
        try:
            with self._stage(system.id, "commit"):
                return self._commit(system, start, end, now, ev, duration, ref, phase, digest=digest,
                                    counted_id=ids[1] if ids is not None and phase != "labels" else None)
        except StateStoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                log.info("window %s of %s was judged by another replica", start, system.id)
                return RunOutcome(system.id, start, end, "skipped", rows=ev.rows)
            raise

    @contextmanager
    def _stage(self, system_id: str, stage: str) -> Iterator[None]:
        """Time one stage of a window's check for ``stage_hook`` (per-stage success and duration)."""
        t0, ok = time.perf_counter(), False
        try:
            yield
            ok = True
        finally:
            if self.stage_hook is not None:
                self.stage_hook(system_id, stage, time.perf_counter() - t0, ok)

    def _join_labels(self, system: SystemConfig, df: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
        """Attach ground truth that arrived within ``labels.max_delay`` of each prediction."""
        lab = system.labels
        label = system.schema_.label
        assert lab is not None and label is not None
        if lab.source is None:
            return df  # labels are filled into the prediction table itself: re-reading it picked them up
        pid = system.schema_.id_column
        lid = lab.id_column or pid
        lcol = lab.column or label
        lts = lab.timestamp_column or system.schema_.timestamp_column
        assert pid is not None and lid is not None
        labels = self.source(system, "labels").read_window(start, end + lab.max_delay, columns=[lid, lcol, lts])
        out = df.drop(columns=[label], errors="ignore")
        if labels.empty or lid not in labels.columns or lcol not in labels.columns:
            import pandas as pd

            out[label] = pd.Series([None] * len(out), dtype="object")
            return out
        from connectors.sources.files import to_utc

        labels = labels.rename(columns={lid: "__id", lcol: label, lts: "__label_ts"})
        if "__label_ts" in labels.columns:
            labels = labels.sort_values("__label_ts")
        # a corrected label replaces an earlier one: keep the last per prediction id
        labels = labels.drop_duplicates("__id", keep="last")
        merged = out.merge(labels, how="left", left_on=pid, right_on="__id")
        if "__label_ts" in merged.columns:
            late = (to_utc(merged["__label_ts"]) - to_utc(merged[system.schema_.timestamp_column])) > lab.max_delay
            merged.loc[late.fillna(False).to_numpy(), label] = None
        return merged.drop(columns=[c for c in ("__id", "__label_ts") if c in merged.columns])

    def _commit(self, system: SystemConfig, start: datetime, end: datetime, now: datetime,
                ev: WindowEvaluation, duration: float, ref: SystemReference, phase: Phase = "all", *,
                digest: str, counted_id: Any = None) -> RunOutcome:
        outcome = RunOutcome(system.id, start, end, ev.status, rows=ev.rows, verdicts=ev.verdicts,
                             results=ev.results)
        verdicts = [*ev.verdicts, Verdict("collection", "source", "ok", value=0.0, threshold=None,
                                          summary="source read")]
        with self.store.transaction() as s:
            run = CheckRun(system_id=system.id, phase=phase, window_start=start, window_end=end,
                           started_at=now, finished_at=now, status=ev.status, rows=ev.rows, results=ev.results)
            s.add(run)
            s.flush()
            record = self.ledger.append(s, "check_run", {
                "check_run_id": run.id, "phase": phase, "window": {"start": start, "end": end}, "rows": ev.rows,
                "status": ev.status, "input_digest": digest, "config_digest": self.config_digest,
                "reference": self.reference_names.get(system.id), "reference_digest": ref.digest,
                "reference_rows": ref.rows, "model": f"{system.model.name} {system.model.version}",
                "source": self.source(system).describe(), "duration_s": round(duration, 6),
                "verdicts": [{"check": v.check, "subject": v.subject, "state": v.state, "value": v.value,
                              "threshold": v.threshold, "summary": v.summary} for v in ev.verdicts],
                "results": ev.results,
            }, system_id=system.id, now=now)
            run.evidence_seq = record.seq
            for v in verdicts:
                change = self._decide(s, system, v, (start, end), now, record.seq)
                if change:
                    outcome.changes.append(change)
            self._store_series(s, system, ev, phase)
            self._stats(s, system, ev, now, duration, failed=False)
            stream = "labels" if phase == "labels" else "predictions"
            self._set_watermark(s, system, stream, end.isoformat(), now)
            if counted_id is not None:
                self._set_watermark(s, system, ID_STREAM, json.dumps(counted_id), now)
        return outcome

    @staticmethod
    def _set_watermark(s: Any, system: SystemConfig, stream: str, value: str, now: datetime) -> None:
        wm = s.get(Watermark, (system.id, stream))
        if wm is None:
            s.add(Watermark(system_id=system.id, stream=stream, value=value, updated_at=now))
        else:
            wm.value, wm.updated_at = value, now

    # -- id mode ------------------------------------------------------------------------------------
    @staticmethod
    def id_mode(system: SystemConfig) -> bool:
        """Whether the system's source counts rows by a growing id (``watermark: {kind: id}``)."""
        return getattr(getattr(system.source, "watermark", None), "kind", None) == "id"

    def _id_range(self, system: SystemConfig, start: datetime, phase: Phase, src: Any) -> tuple[Any, Any]:
        """``(counted, upto)``: the greatest id already counted, and the greatest id this window counts.

        The labels phase re-reads the rows its window counted when it was judged, no more, no fewer.
        """
        with self.store.session() as s:
            if phase == "labels":
                run = s.execute(select(CheckRun).where(
                    CheckRun.system_id == system.id, CheckRun.window_start == start,
                    CheckRun.phase == "predictions").order_by(CheckRun.id.desc()).limit(1)).scalar_one_or_none()
                counted_range: Any = (run.results or {}).get("id_range") if run is not None else None
                if isinstance(counted_range, list) and len(counted_range) == 2:
                    return counted_range[0], counted_range[1]
            row = s.get(Watermark, (system.id, ID_STREAM))
            counted = json.loads(row.value) if row is not None else None
        return counted, src.max_id()

    @staticmethod
    def _read(src: Source, start: datetime, end: datetime, columns: list[str], ids: tuple[Any, Any] | None
              ) -> pd.DataFrame:
        if ids is None:
            return src.read_window(start, end, columns=columns)
        return src.read_window(start, end, columns=columns, ids=ids)  # type: ignore[call-arg]

    def _decide(self, s: Any, system: SystemConfig, v: Verdict, window: tuple[datetime, datetime] | None,
                now: datetime, seq: int | None) -> IncidentChange | None:
        row = s.get(Decision, (system.id, v.check, v.subject))
        prev = Streaks(row.state, row.breach_streak, row.ok_streak) if row else Streaks()
        hyst = self._hysteresis(system, v.check)
        nxt, tr = step(prev, v.state, open_after=hyst[0], close_after=hyst[1])
        # a breach a person overrode stays without an incident until the metric recovers once
        suppressed = bool(row is not None and (row.detail or {}).get("suppressed")) and v.state == "breach"
        detail: dict[str, object] = {"summary": v.summary, **({"suppressed": True} if suppressed else {})}
        if row is None:
            row = Decision(system_id=system.id, check=v.check, subject=v.subject, state=nxt.state,
                           raw_state=v.state, breach_streak=nxt.breach_streak, ok_streak=nxt.ok_streak,
                           value=v.value, detail=detail, updated_at=now)
            s.add(row)
        else:
            row.state, row.raw_state = nxt.state, v.state
            row.breach_streak, row.ok_streak = nxt.breach_streak, nxt.ok_streak
            row.value, row.detail, row.updated_at = v.value, detail, now
        if tr.before != tr.after:
            self.ledger.append(s, "decision_changed", {
                "check": v.check, "subject": v.subject, "from": tr.before, "to": tr.after, "raw": v.state,
                "value": v.value, "threshold": v.threshold, "summary": v.summary,
            }, system_id=system.id, now=now)
        if suppressed:
            return None
        return self.incidents.apply(s, system=system, verdict=v, transition=tr, window=window, now=now,
                                    evidence_seq=seq)

    @staticmethod
    def _hysteresis(system: SystemConfig, check: str) -> tuple[int, int]:
        c = system.checks
        h = {"drift": c.drift.hysteresis, "prediction_drift": c.drift.hysteresis, "fairness": c.fairness.hysteresis,
             "performance": c.performance.hysteresis, "data_quality": c.data_quality.hysteresis}.get(check)
        if h is None:
            return COLLECTION_OPEN_AFTER, 1
        return h.open_after, h.close_after

    def _store_series(self, s: Any, system: SystemConfig, ev: WindowEvaluation, phase: Phase) -> None:
        # the window replaces every family its phase owns, not only those it produced: a feature, a
        # group or a whole family the window no longer has stops being exported
        families = families_of_phase(system, phase) | {f for f, _, _ in ev.series}
        s.execute(delete(MetricValue).where(MetricValue.system_id == system.id, MetricValue.family.in_(families)))
        now = self.clock()
        seen: set[tuple[str, str]] = set()
        for family, labels, value in ev.series:
            key = series_key(labels)  # label values bounded, so the JSON fits its column whole
            if (family, key) in seen:
                continue
            seen.add((family, key))
            s.add(MetricValue(system_id=system.id, family=family, labels=key, value=value, updated_at=now))

    def _stats(self, s: Any, system: SystemConfig, ev: WindowEvaluation | None, now: datetime, duration: float,
               *, failed: bool) -> None:
        checks = ["collection"]
        if ev is not None:
            checks += sorted({v.check for v in ev.verdicts})
        for check in checks:
            row = s.get(CheckStat, (system.id, check))
            if row is None:
                row = CheckStat(system_id=system.id, check=check, runs=0, failures=0, last_duration_s=0.0)
                s.add(row)
            row.runs += 1
            row.last_run_at = now
            row.last_duration_s = duration
            if failed:
                row.failures += 1
            else:
                row.last_success_at = now

    def _failed(self, system: SystemConfig, start: datetime, end: datetime, now: datetime, exc: AimsError,
                duration: float) -> RunOutcome:
        log.warning("check of %s for window %s failed: %s", system.id, start.isoformat(), exc)
        outcome = RunOutcome(system.id, start, end, "failed", error=str(exc))
        with self.store.transaction() as s:
            self._stats(s, system, None, now, duration, failed=True)
            self.ledger.append(s, "check_failed", {
                "window": {"start": start, "end": end}, "error": str(exc)[:1000],
                "error_type": type(exc).__name__, "retryable": bool(getattr(exc, "retryable", False)),
            }, system_id=system.id, now=now)
            row = s.get(Decision, (system.id, "collection", "source"))
            streak = (row.breach_streak + 1) if row else 1
            v = Verdict("collection", "source", "breach", value=float(streak), threshold=float(COLLECTION_OPEN_AFTER),
                        summary=str(exc)[:300], detail={"error": str(exc)[:300]})
            change = self._decide(s, system, v, (start, end), now, None)
            if change:
                outcome.changes.append(change)
        return outcome

    # -- outputs ------------------------------------------------------------------------------------
    def deliver(self, now: datetime | None = None) -> int:
        return self.outbox.deliver_due(now or self.clock()).delivered

    def decisions(self, system_id: str | None = None) -> list[dict[str, Any]]:
        with self.store.session() as s:
            q = select(Decision)
            if system_id:
                q = q.where(Decision.system_id == system_id)
            return [{"system": d.system_id, "check": d.check, "subject": d.subject, "state": d.state,
                     "value": d.value, "summary": d.detail.get("summary"), "updated_at": utc(d.updated_at)}
                    for d in s.execute(q.order_by(Decision.system_id, Decision.check, Decision.subject)).scalars()]

