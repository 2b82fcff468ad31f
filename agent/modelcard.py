"""The monitoring section of a system's model card (Markdown), written from live evidence.

What is monitored and how (from the configuration), what the latest window found, what happened over
the period (from the evidence ledger and the incidents), what is still open, and where the evidence is,
so the card's claims can be checked against the ledger.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent import __version__
from agent.evidence import SIGNATURE_SEQ, iso, read_signed_head
from agent.incidents import utc
from agent.schema import Decision, EvidenceRecord, Incident, LedgerHead
from agent.store import Store
from config.model import AgentConfig, FileSourceConfig, SystemConfig


def _f(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)


def _dur(td: timedelta) -> str:
    """``2d``, ``1h``, ``15m``, ``30s``: how durations are written in the config."""
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _source(system: SystemConfig) -> str:
    src = system.source
    if isinstance(src, FileSourceConfig):
        return f"files ({src.format}) at `{src.path}`"
    # URLs may carry credentials: name the table or the kind of source, never the URL
    table = getattr(src, "table", None)
    return f"a {src.type} source" + (f", table `{table}`" if table else "")


def _methods(system: SystemConfig) -> list[str]:
    c = system.checks
    rows = ["| check | method | threshold | opens after / closes after |", "|---|---|---|---|"]
    if c.drift.enabled:
        per = ", ".join(f"{k}: {v}" for k, v in c.drift.per_column.items())
        rows.append(f"| data drift (per feature) | {c.drift.method}{' (' + per + ')' if per else ''} | "
                    f"{_f(c.drift.threshold) if c.drift.threshold else 'method default'}; dataset drift when at least "
                    f"{c.drift.drift_share:.0%} of features drift"
                    f"{f'; Benjamini-Hochberg at {c.drift.fdr_alpha}' if c.drift.fdr_alpha else ''} | "
                    f"{c.drift.hysteresis.open_after} / {c.drift.hysteresis.close_after} windows |")
        if c.drift.prediction and system.schema_.prediction:
            method = c.drift.per_column.get(system.schema_.prediction.column, c.drift.method)
            rows.append(f"| prediction drift | {method} | method default | {c.drift.hysteresis.open_after} / "
                        f"{c.drift.hysteresis.close_after} |")
    if c.fairness.enabled:
        rows.append(f"| fairness ({', '.join(c.fairness.sensitive)}) | {c.fairness.metric} (fairlearn definitions), "
                    f"groups of at least {c.fairness.min_group_size}"
                    f"{', breach only when significant' if c.fairness.require_significance else ''} | "
                    f"{_f(c.fairness.threshold)} | {c.fairness.hysteresis.open_after} / "
                    f"{c.fairness.hysteresis.close_after} |")
    if c.performance.enabled:
        bounds = " and ".join(x for x in (f"min {_f(c.performance.min)}" if c.performance.min is not None else "",
                                          f"max {_f(c.performance.max)}" if c.performance.max is not None else "") if x)
        rows.append(f"| performance | {c.performance.metric} on at least {c.performance.min_labels} labelled rows | "
                    f"{bounds} | {c.performance.hysteresis.open_after} / {c.performance.hysteresis.close_after} |")
    if c.data_quality.enabled:
        q = c.data_quality
        rows.append(f"| data quality | missing, out-of-range, unseen categories, type errors, schema changes | "
                    f"missing {q.max_missing_share:.0%}, out of range {q.max_out_of_range_share:.0%}, unseen "
                    f"{q.max_unseen_category_share:.0%}, type errors {q.max_type_error_share:.0%} | "
                    f"{q.hysteresis.open_after} / {q.hysteresis.close_after} |")
    return rows


def model_card_section(store: Store, cfg: AgentConfig, system_id: str, now: datetime, *, days: int = 90) -> str:
    system = cfg.system(system_id)
    since = iso(now - timedelta(days=days))
    sc = system.schema_
    out = ["## Monitoring", "",
           f"_Written by aims-agent {__version__} at {iso(now)} from the evidence ledger; period: the last {days} "
           f"days ({since} to {iso(now)})._", "",
           "### What is monitored", "",
           f"- System: **{system.name}** (`{system.id}`), model `{system.model.name}` version "
           f"`{system.model.version}`, life-cycle stage {system.lifecycle_stage.value}",
           f"- Purpose: {system.purpose}"]
    if system.decisions:
        out.append(f"- Decisions influenced: {', '.join(system.decisions)}")
    out += [f"- Role: {system.role.value}; risk tier: {system.risk_tier.value}; EU AI Act high-risk: "
            f"{'yes' if system.eu_ai_act_high_risk else 'no'}; impact assessment: "
            f"{system.impact_assessment_ref or 'none recorded'}",
            f"- Owner: {system.owner.team} ({system.owner.contact})",
            f"- Inputs: {len(sc.features)} features: "
            + ", ".join(f"`{k}` ({v.value})" for k, v in sc.features.items())]
    if sc.prediction:
        out.append(f"- Prediction: `{sc.prediction.column}` ({sc.prediction.kind.value})")
    if sc.label:
        delay = f", arriving up to {_dur(system.labels.max_delay)} late" if system.labels else ""
        out.append(f"- Ground truth: `{sc.label}`{delay}")
    if sc.sensitive:
        out.append(f"- Sensitive features (fairness): {', '.join(f'`{x}`' for x in sc.sensitive)}")
    out += [f"- Data: predictions read from {_source(system)}; compared with a fixed reference dataset",
            f"- Windows: {_dur(system.window.size)} tumbling windows, judged {_dur(system.window.lateness)} after "
            f"they end, at least {system.window.min_rows} rows each", "",
            "### Methods and thresholds", "", *_methods(system), ""]
    with store.session() as s:
        recs = list(s.execute(select(EvidenceRecord).where(
            EvidenceRecord.system_id == system.id, EvidenceRecord.ts >= since, EvidenceRecord.seq > SIGNATURE_SEQ)
            .order_by(EvidenceRecord.seq)).scalars())
        incidents = list(s.execute(select(Incident).where(Incident.system_id == system.id)
                                   .order_by(Incident.id)).scalars())
        decisions = list(s.execute(select(Decision).where(Decision.system_id == system.id)
                                   .order_by(Decision.check, Decision.subject)).scalars())
        head = s.get(LedgerHead, 1)
        signed = read_signed_head(s)
    runs = [r for r in recs if r.kind == "check_run"]
    out += ["### Latest results", ""]
    latest: dict[tuple[str, str], tuple[dict[str, Any], int, dict[str, Any]]] = {}
    for r in runs:  # the label phase judges performance later than the rest: the latest verdict of each check
        run_payload: dict[str, Any] = dict(r.payload)
        for v in run_payload.get("verdicts") or []:
            latest[(str(v.get("check")), str(v.get("subject")))] = (v, r.seq, run_payload.get("window") or {})
    if latest:
        out += ["| check | subject | state | value | threshold | window | record | summary |",
                "|---|---|---|---|---|---|---|---|"]
        for (check, subject), (v, seq, window) in sorted(latest.items()):
            out.append(f"| {check} | {subject} | {v.get('state')} | {_f(v.get('value'))} | {_f(v.get('threshold'))} "
                       f"| {window.get('start', '')} | {seq} | {str(v.get('summary', '')).replace('|', '/')} |")
    else:
        out.append("No check ran in the period.")
    out += ["", "### Over the period", ""]
    states: dict[str, Counter[str]] = defaultdict(Counter)
    for r in runs:
        payload: dict[str, Any] = dict(r.payload)
        for v in payload.get("verdicts") or []:
            states[f"{v.get('check')} {v.get('subject')}"][str(v.get("state"))] += 1
    failed = sum(1 for r in recs if r.kind == "check_failed")
    out.append(f"{len(runs)} windows judged, {failed} failed checks.")
    if states:
        out += ["", "| check | windows ok | warning | breach | insufficient data |", "|---|---|---|---|---|"]
        out += [f"| {k} | {c['ok']} | {c['warning']} | {c['breach']} | {c['insufficient_data']} |"
                for k, c in sorted(states.items())]
    in_period = [i for i in incidents if iso(utc(i.opened_at)) >= since or i.status != "resolved"]
    out += ["", "### Incidents in the period", ""]
    if in_period:
        out += ["| # | kind | subject | severity | opened | resolved | status |", "|---|---|---|---|---|---|---|"]
        out += [f"| {i.id} | {i.kind} | {i.subject} | {i.severity} | {iso(utc(i.opened_at))} | "
                f"{iso(utc(i.resolved_at)) if i.resolved_at else ''} | {i.status} |" for i in in_period]
    else:
        out.append("None.")
    open_incidents = [i for i in incidents if i.status != "resolved"]
    attention = [d for d in decisions if d.state in ("breach", "warning")]
    out += ["", "### Open issues", ""]
    if not open_incidents and not attention:
        out.append("None: every monitored check is within its thresholds or has too little data to judge.")
    out += [f"- Incident #{i.id} ({i.kind}, {i.severity}, {i.status}): {i.title}" for i in open_incidents]
    out += [f"- {d.check} on {d.subject} is in **{d.state}** ({_f(d.value)})" for d in attention]
    kinds = Counter(r.kind for r in recs)
    controls = sorted({c for r in recs for c in r.controls})
    out += ["", "### Evidence", "",
            f"- {len(recs)} evidence records for this system in the period"
            + (f" (records {recs[0].seq} to {recs[-1].seq})" if recs else "") + ": "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
            f"- Ledger head: record {head.seq if head else 0}, hash `{head.hash if head else '-'}`"
            + (f"; signed ({signed.algorithm}, key {signed.key_id})" if signed else "; not signed"),
            f"- Controls evidenced: {', '.join(controls) if controls else 'none'}",
            f"- Evidence pack for the period: `aims-agent evidence export --config CONFIG --system {system.id} "
            f"--since {since} --out PACK`, then `aims-agent evidence verify PACK`", ""]
    return "\n".join(out)
