"""AI risk signals for the enterprise risk register, and re-assessment triggers for impact assessments.

``risk_register`` turns a period of live evidence into one entry per (system, monitored risk) with the
fields of an ISO/IEC 23894-style register entry (risk source, objective affected, likelihood,
consequence, level, treatment, key risk indicators...). ``detect_reassessment_triggers`` and
``detect_model_changes`` find the significant changes that call for a new risk and impact assessment
(ISO 42001 clauses 8.2 and 8.4, A.5.2; ISO/IEC 42005): drift in breach for N consecutive windows, a new
bias breach, a model version change between two config loads. Each is recorded as a
``reassessment_trigger`` record and raised as an incident of kind ``reassessment``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.decisions import Transition, Verdict
from agent.evidence import Ledger, iso
from agent.incidents import IncidentManager, utc
from agent.schema import Decision, EvidenceRecord, Incident
from agent.store import Store
from config.errors import InputError
from config.model import AgentConfig, RiskTier, SystemConfig

DRIFT_CHECKS = ("drift", "prediction_drift")
REVIEW_DAYS = 90

# What each monitored signal means as a risk (ISO/IEC 23894 Annex B sources, ISO 42001 Annex C objectives).
SIGNALS: dict[str, dict[str, Any]] = {
    "drift": {
        "source": "machine learning: data distribution shift (complexity of the environment)",
        "objective": "robustness", "controls": ["A.6.2.6", "A.7.4", "A.9.4"],
        "event": "input data drift away from the data the model was built on ({subject})",
        "consequence": "predictions lose accuracy for the shifted population; decisions degrade unnoticed"},
    "prediction_drift": {
        "source": "machine learning: model behaviour change", "objective": "robustness; transparency",
        "controls": ["A.6.2.6", "A.9.4"], "event": "the distribution of the model's output shifts ({subject})",
        "consequence": "decision rates change for the people affected"},
    "fairness": {
        "source": "machine learning: bias in data or model", "objective": "fairness",
        "controls": ["A.5.4", "A.5.2", "A.6.2.6"], "event": "outcomes differ across groups of {subject}",
        "consequence": "unfair treatment of individuals or groups; fundamental-rights exposure"},
    "performance": {
        "source": "life-cycle issues: model ageing", "objective": "robustness; safety",
        "controls": ["A.6.2.6", "A.6.1.2", "A.8.2"], "event": "{subject} falls below the required level",
        "consequence": "more wrong decisions than declared in the instructions for use"},
    "data_quality": {
        "source": "data quality of operational inputs (life-cycle issues)", "objective": "data quality",
        "controls": ["A.7.4", "A.6.2.6"], "event": "operational input data violate quality requirements",
        "consequence": "features silently wrong; decisions made on bad inputs"},
    "collection": {
        "source": "technology readiness: monitoring pipeline failure", "objective": "maintainability; accountability",
        "controls": ["A.6.2.6", "A.6.2.8"], "event": "the agent cannot read the system's predictions",
        "consequence": "a monitoring gap: degradation would go undetected"},
}
LIKELIHOOD = ["rare", "unlikely", "possible", "likely", "almost certain"]
CONSEQUENCE = ["negligible", "minor", "moderate", "major", "severe"]
TIER_CONSEQUENCE = {RiskTier.minimal: 1, RiskTier.limited: 2, RiskTier.high: 4, RiskTier.unacceptable: 5}
FIELDS = ["risk_id", "system_id", "system_name", "lifecycle_stage", "risk_source", "objective_affected", "event",
          "consequence_description", "affected_parties", "likelihood", "consequence", "level", "evaluation",
          "treatment_option", "linked_controls", "owner", "residual_risk", "key_risk_indicators", "review_date",
          "record_log", "register_ids", "current_state", "windows_judged", "windows_in_breach"]


def _level(score: int) -> str:
    return "low" if score <= 4 else "medium" if score <= 9 else "high" if score <= 15 else "very high"


def _likelihood(breach: int, judged: int) -> int:
    if not breach or not judged:
        return 1
    share = breach / judged
    return 2 if share < 0.05 else 3 if share < 0.2 else 4 if share < 0.5 else 5


def _consequence(system: SystemConfig, check: str) -> int:
    c = TIER_CONSEQUENCE.get(system.risk_tier, 2)
    if check == "fairness" and system.eu_ai_act_high_risk:
        c += 1  # a bias breach on a high-risk system touches fundamental rights (Art. 3(49)(c))
    return min(c, 5)


def _records(s: Session, kind: str, system_id: str | None, since: str | None = None) -> Iterator[EvidenceRecord]:
    q = select(EvidenceRecord).where(EvidenceRecord.kind == kind).order_by(EvidenceRecord.seq)
    if system_id is not None:
        q = q.where(EvidenceRecord.system_id == system_id)
    if since is not None:
        q = q.where(EvidenceRecord.ts >= since)
    yield from s.execute(q.execution_options(yield_per=1000)).scalars()


def risk_register(store: Store, cfg: AgentConfig, now: datetime, *, days: int = 90) -> list[dict[str, Any]]:
    """One register entry per (system, monitored signal), from the last ``days`` of evidence."""
    since = iso(now - timedelta(days=days))
    entries: list[dict[str, Any]] = []
    with store.session() as s:
        for system in cfg.systems:
            judged: dict[tuple[str, str], int] = defaultdict(int)
            breach: dict[tuple[str, str], int] = defaultdict(int)
            seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
            for rec in _records(s, "check_run", system.id, since):
                for v in rec.payload.get("verdicts") or []:  # type: ignore[attr-defined]
                    key = (str(v.get("check")), str(v.get("subject")))
                    if v.get("state") in ("ok", "warning", "breach"):
                        judged[key] += 1
                        seqs[key].append(rec.seq)
                    if v.get("state") == "breach":
                        breach[key] += 1
            decisions = {(d.check, d.subject): d for d in s.execute(
                select(Decision).where(Decision.system_id == system.id)).scalars()}
            incidents = list(s.execute(select(Incident).where(Incident.system_id == system.id)).scalars())
            triggers = [r for r in _records(s, "reassessment_trigger", system.id, since)]
            for check, subject in sorted(set(decisions) | set(judged)):
                if check not in SIGNALS:
                    continue
                entries.append(_entry(system, check, subject, decisions.get((check, subject)),
                                      judged[(check, subject)], breach[(check, subject)], seqs[(check, subject)],
                                      incidents, triggers, now))
    return entries


def _entry(system: SystemConfig, check: str, subject: str, decision: Decision | None, judged: int, breach: int,
           seqs: list[int], incidents: list[Incident], triggers: list[EvidenceRecord],
           now: datetime) -> dict[str, Any]:
    sig = SIGNALS[check]
    from agent.playbooks import CHECK_TO_KIND

    kind = CHECK_TO_KIND.get(check, check)
    mine = [i for i in incidents if i.kind == kind and i.subject == subject]
    open_ = [i for i in mine if i.status != "resolved"]
    state = decision.state if decision else "insufficient_data"
    lik, con = _likelihood(breach, judged), _consequence(system, check)
    residual_lik = lik if state == "breach" else 1
    detail = (decision.detail or {}) if decision else {}
    value = f"{decision.value:.4g}" if decision and decision.value is not None else "n/a"
    kri = f"{check} {subject}: {value} (state {state}; {detail.get('summary', '')})".rstrip("; )") + ")"
    if state == "breach":
        evaluation = "exceeds the risk criteria (threshold breached)"
    elif state == "insufficient_data":
        evaluation = "not evaluated: insufficient data"
    else:
        evaluation = "within the risk criteria"
    level = _level(lik * con)
    treatment = ("retain: keep monitoring" if level == "low" else
                 "change likelihood: act on the open incident (fix the pipeline, refresh the reference, retrain "
                 "or mitigate) and verify with the next windows")
    # a trigger's subject is "<incident kind>:<subject>" ("bias:sex" for the fairness check on sex)
    my_triggers = [t for t in triggers if str(t.payload.get("subject", "")) == f"{kind}:{subject}"]
    review = now + (timedelta(days=7) if open_ or my_triggers else timedelta(days=REVIEW_DAYS))
    log = [f"{judged} windows judged" + (f", evidence records {seqs[0]}..{seqs[-1]}" if seqs else "")]
    log += [f"incident #{i.id} {i.status} ({i.severity}), opened {utc(i.opened_at).isoformat()}" for i in mine[-5:]]
    log += [f"re-assessment trigger record {t.seq}: {t.payload.get('reason')}" for t in my_triggers[-3:]]
    affected = list(system.affected_groups) if check == "fairness" else [f"people subject to: {d}"
                                                                          for d in system.decisions]
    return {
        "risk_id": f"AIR-{system.id}-{check}-{subject}",
        "system_id": system.id, "system_name": system.name, "lifecycle_stage": system.lifecycle_stage.value,
        "risk_source": sig["source"], "objective_affected": sig["objective"],
        "event": sig["event"].format(subject=subject), "consequence_description": sig["consequence"],
        "affected_parties": affected or ["people affected by the system's decisions"],
        "likelihood": LIKELIHOOD[lik - 1], "consequence": CONSEQUENCE[con - 1], "level": level,
        "evaluation": evaluation, "treatment_option": treatment,
        "linked_controls": [f"ISO 42001 {c}" for c in sig["controls"]],
        "owner": f"{system.owner.team} <{system.owner.contact}>",
        "residual_risk": _level(residual_lik * con), "key_risk_indicators": [kri],
        "review_date": review.date().isoformat(), "record_log": log,
        "register_ids": list(system.risk_register_ids), "current_state": state,
        "windows_judged": judged, "windows_in_breach": breach,
    }


def render_risk(entries: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(entries, indent=2) + "\n"
    if fmt != "csv":
        raise InputError(f"unknown format {fmt!r} (csv or json)")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for e in entries:
        w.writerow(["; ".join(e[f]) if isinstance(e[f], list) else e[f] for f in FIELDS])
    return buf.getvalue()


# -- re-assessment triggers -----------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    system_id: str
    subject: str  # "drift:dataset", "bias:sex", "model_version"
    reason: str
    key: str  # what makes it new: the same key never triggers twice
    record_seq: int | None = None
    incident_id: int | None = None


def _known_keys(s: Session, system_id: str) -> set[str]:
    return {str(r.payload.get("trigger_key")) for r in _records(s, "reassessment_trigger", system_id)}


def raise_trigger(s: Session, ledger: Ledger, incidents: IncidentManager, system: SystemConfig, trigger: Trigger,
                  now: datetime, *, detail: dict[str, Any] | None = None) -> Trigger:
    """Record the trigger and open (or keep open) the system's re-assessment incident for it."""
    record = ledger.append(s, "reassessment_trigger", {
        "trigger_key": trigger.key, "subject": trigger.subject, "reason": trigger.reason,
        "impact_assessment_ref": system.impact_assessment_ref, "risk_register_ids": list(system.risk_register_ids),
        **(detail or {}),
    }, system_id=system.id, now=now)
    verdict = Verdict("reassessment", trigger.subject, "breach", value=1.0, threshold=1.0, summary=trigger.reason,
                      detail={"trigger": trigger.subject, "reason": trigger.reason,
                              "impact_assessment": system.impact_assessment_ref or "none recorded",
                              "trigger_record": record.seq})
    change = incidents.apply(s, system=system, verdict=verdict, transition=Transition("ok", "breach"), window=None,
                             now=now, evidence_seq=record.seq)
    return Trigger(trigger.system_id, trigger.subject, trigger.reason, trigger.key, record.seq,
                   change.incident_id if change else None)


def _breach_episode(s: Session, system_id: str, check: str, subject: str) -> int | None:
    """The decision_changed record that moved (check, subject) into breach most recently."""
    q = (select(EvidenceRecord).where(EvidenceRecord.kind == "decision_changed",
                                      EvidenceRecord.system_id == system_id).order_by(EvidenceRecord.seq.desc()))
    for rec in s.execute(q.execution_options(yield_per=200)).scalars():
        p = rec.payload
        if p.get("check") == check and p.get("subject") == subject and p.get("to") == "breach":
            return rec.seq
    return None


def detect_reassessment_triggers(store: Store, cfg: AgentConfig, ledger: Ledger, incidents: IncidentManager,
                                 now: datetime, *, sustained_windows: int | None = None) -> list[Trigger]:
    """Sustained drift and new bias breaches since the last call; each raised once."""
    n = sustained_windows or cfg.agent.evidence.reassessment_drift_windows
    raised: list[Trigger] = []
    with store.transaction() as s:
        for system in cfg.systems:
            known = _known_keys(s, system.id)
            found: list[Trigger] = []
            for d in s.execute(select(Decision).where(Decision.system_id == system.id,
                                                      Decision.check.in_(DRIFT_CHECKS),
                                                      Decision.state == "breach")).scalars():
                if d.breach_streak < n:
                    continue
                episode = _breach_episode(s, system.id, d.check, d.subject)
                found.append(Trigger(system.id, f"{d.check}:{d.subject}",
                                     f"{d.check} on {d.subject} in breach for {d.breach_streak} consecutive windows "
                                     f"(trigger: {n})", f"sustained:{d.check}:{d.subject}:{episode}"))
            for inc in s.execute(select(Incident).where(Incident.system_id == system.id, Incident.kind == "bias",
                                                        Incident.status != "resolved")).scalars():
                found.append(Trigger(system.id, f"bias:{inc.subject}",
                                     f"new bias breach on {inc.subject} (incident #{inc.id}: {inc.title})",
                                     f"bias:incident:{inc.id}"))
            for t in found:
                if t.key not in known:
                    raised.append(raise_trigger(s, ledger, incidents, system, t, now))
                    known.add(t.key)
    return raised


@dataclass(frozen=True)
class ModelChange:
    system_id: str
    before: str
    after: str
    config_seq: int


def detect_model_changes(store: Store, cfg: AgentConfig, *, ledger: Ledger | None = None,
                         incidents: IncidentManager | None = None, now: datetime | None = None) -> list[ModelChange]:
    """Compare the latest ``config_loaded`` record's systems with the previous one's.

    With ``ledger`` and ``incidents``, each change is recorded (``model_version_changed``), and raised as
    a re-assessment trigger, once: calling again for the same config load records nothing new.
    """
    with store.transaction() as s:
        loads = s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == "config_loaded")
                          .order_by(EvidenceRecord.seq.desc()).limit(2)).scalars().all()
        if len(loads) < 2:
            return []
        latest, previous = loads
        before = {str(x.get("id")): str(x.get("model")) for x in previous.payload.get("systems", [])}  # type: ignore[attr-defined]
        changes = [ModelChange(str(x.get("id")), before[str(x.get("id"))], str(x.get("model")), latest.seq)
                   for x in latest.payload.get("systems", [])  # type: ignore[attr-defined]
                   if str(x.get("id")) in before and before[str(x.get("id"))] != str(x.get("model"))]
        if ledger is None or incidents is None:
            return changes
        when = now or datetime.fromisoformat(latest.ts.replace("Z", "+00:00"))
        for ch in changes:
            try:
                system = cfg.system(ch.system_id)
            except KeyError:
                continue
            key = f"model:{ch.config_seq}"
            if key in _known_keys(s, system.id):
                continue
            ledger.append(s, "model_version_changed", {
                "before": ch.before, "after": ch.after, "config_loaded_seq": ch.config_seq,
                "previous_config_loaded_seq": previous.seq,
                "note": "baseline: the reference and thresholds were set for the previous version; review them",
            }, system_id=system.id, now=when)
            raise_trigger(s, ledger, incidents, system,
                          Trigger(system.id, "model_version", f"model changed from {ch.before} to {ch.after}", key),
                          when, detail={"before": ch.before, "after": ch.after})
    return changes
