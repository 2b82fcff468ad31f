"""AI-triage playbooks: turn a breached decision into incident content (title, severity, triage, owners,
controls, EU AI Act clock). The ticketing tool that receives it is only the shell.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.decisions import Verdict
from config.errors import ConfigError, Problem
from config.model import Role, SystemConfig
from config.playbooks import SEVERITIES, read_playbooks

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "playbooks" / "default.yaml"

CHECK_TO_KIND = {
    "drift": "drift",
    "prediction_drift": "prediction_drift",
    "fairness": "bias",
    "performance": "performance",
    "data_quality": "data_quality",
    "collection": "collector_down",
}


class _Lenient(string.Formatter):
    """Missing template fields render as '?' instead of failing an incident."""

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, str):
            return kwargs.get(key, "?")
        return super().get_value(key, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return str(super().format_field(value, format_spec))
        except (ValueError, TypeError):
            return str(value)


_FMT = _Lenient()


@dataclass(frozen=True)
class Content:
    title: str
    summary: str
    severity: str
    body_markdown: str
    data: dict[str, Any]


def load_kinds(src: Path) -> dict[str, dict[str, Any]]:
    """The ``kinds:`` of a playbook file, checked against the schema; ConfigError lists every problem."""
    kinds, problems = read_playbooks(src)
    if problems:
        raise ConfigError([Problem(f"playbooks.{p.path}".rstrip("."), p.message) for p in problems])
    return kinds


def overlay(base: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``over`` laid on ``base``: per kind, the keys it sets replace the base's, the others stay."""
    merged = {k: dict(v) for k, v in base.items()}
    for kind, book in over.items():
        merged[str(kind)] = {**merged.get(str(kind), {}), **book}
    return merged


class Playbooks:
    """Three layers, each laid over the one before: the shipped playbooks, the organisation's
    (``agent.playbooks_file``) and a system's own (``systems[].incidents.playbooks``).

    A layer replaces, per kind, the keys it sets (title, summary, severity, triage, controls) and keeps
    the rest. Relative paths are taken from ``base_dir`` (the config file's folder).
    """

    def __init__(self, path: Path | None = None, *, base_dir: Path | None = None,
                 kinds: dict[str, dict[str, Any]] | None = None, organisation: str | None = None) -> None:
        self.base_dir = base_dir
        base = kinds if kinds is not None else load_kinds(path or SHIPPED)
        self.kinds: dict[str, dict[str, Any]] = (
            overlay(base, load_kinds(self.overlay_path(organisation))) if organisation else base)
        self._overlays: dict[str, Playbooks] = {}

    def overlay_path(self, ref: str) -> Path:
        p = Path(ref).expanduser()
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p

    def for_system(self, system: SystemConfig) -> Playbooks:
        """The playbooks of one system: this set with the system's override file laid over it."""
        ref = system.incidents.playbooks
        if not ref:
            return self
        cached = self._overlays.get(ref)
        if cached is None:
            merged = overlay(self.kinds, load_kinds(self.overlay_path(ref)))
            cached = self._overlays[ref] = Playbooks(kinds=merged, base_dir=self.base_dir)
        return cached

    def check(self, systems: list[SystemConfig]) -> list[Problem]:
        """Every unusable override file, so a start-up check can report them all at once."""
        problems: list[Problem] = []
        for system in systems:
            try:
                self.for_system(system)
            except ConfigError as exc:
                problems.extend(Problem(f"systems.{system.id}.incidents.playbooks", str(p)) for p in exc.problems)
        return problems

    def severity(self, kind: str, system: SystemConfig, ratio: float, groups: Sequence[str] = ()) -> str:
        """The first rule of ``kind`` whose conditions all hold; ``medium`` when none does."""
        affected = {str(g) for g in groups}
        for rule in self.kinds.get(kind, {}).get("severity", []):
            when = rule.get("when", {})
            if "risk_tier" in when and system.risk_tier.value not in when["risk_tier"]:
                continue
            if "high_risk" in when and bool(when["high_risk"]) != system.eu_ai_act_high_risk:
                continue
            if "min_ratio" in when and ratio < float(when["min_ratio"]):
                continue
            if "min_affected_groups" in when and len(affected) < int(when["min_affected_groups"]):
                continue
            if "affected_groups" in when and not affected & {str(g) for g in when["affected_groups"]}:
                continue
            severity = str(rule.get("severity"))
            if severity in SEVERITIES:  # files are checked at load; a bad value never outranks the default
                return severity
        return "medium"

    def render(
        self,
        *,
        system: SystemConfig,
        verdict: Verdict,
        window: tuple[datetime, datetime] | None,
        opened_at: datetime,
        links: dict[str, str],
    ) -> Content:
        kind = CHECK_TO_KIND.get(verdict.check, verdict.check)
        book = self.kinds.get(kind, {})
        value = verdict.value if verdict.value is not None else float("nan")
        threshold = verdict.threshold if verdict.threshold is not None else float("nan")
        ratio = _ratio(value, threshold, floor=bool(verdict.detail.get("floor")))
        fields: dict[str, Any] = {
            "system_name": system.name,
            "system_id": system.id,
            "subject": verdict.subject,
            "value": value,
            "threshold": threshold,
            "model_name": system.model.name,
            "model_version": system.model.version,
            "owner_team": system.owner.team,
            "owner_contact": system.owner.contact,
            "window_start": window[0].isoformat() if window else "?",
            "window_end": window[1].isoformat() if window else "?",
            "detail_text": verdict.summary,
            **{k: v for k, v in verdict.detail.items() if isinstance(v, str | int | float)},
        }
        title = _FMT.format(book.get("title", "{system_name}: {subject}"), **fields)[:240]
        summary = _FMT.format(book.get("summary", "{detail_text}"), **fields)
        groups = verdict.detail.get("affected_groups", system.affected_groups)
        groups = [str(g) for g in groups] if isinstance(groups, list) else []
        severity = self.severity(kind, system, ratio, groups)
        triage = [str(s) for s in book.get("triage", [])]
        controls = [str(c) for c in book.get("controls", [])]
        data: dict[str, Any] = {
            "kind": kind,
            "what_happened": summary,
            "measurement": {"check": verdict.check, "subject": verdict.subject, "value": verdict.value,
                            "threshold": verdict.threshold, **_jsonable(verdict.detail)},
            "window": {"start": fields["window_start"], "end": fields["window_end"]},
            "triage": triage,
            "owner": {"team": system.owner.team, "contact": system.owner.contact,
                      "escalation": system.owner.escalation},
            "system": {"id": system.id, "name": system.name, "purpose": system.purpose,
                       "role": system.role.value, "risk_tier": system.risk_tier.value,
                       "eu_ai_act_high_risk": system.eu_ai_act_high_risk,
                       "model": f"{system.model.name} {system.model.version}",
                       "impact_assessment_ref": system.impact_assessment_ref},
            "affected_groups": groups,
            "controls": controls,
            "risk_register_ids": list(system.risk_register_ids),
            "links": links,
        }
        if system.eu_ai_act_high_risk:
            data["eu_ai_act"] = serious_incident_assessment(system, opened_at)
        body = _markdown(summary, data)
        return Content(title=title, summary=summary, severity=severity, body_markdown=body, data=data)


def serious_incident_assessment(system: SystemConfig, aware_at: datetime) -> dict[str, Any]:
    """Art. 73 clock for a high-risk system: what to decide, by when, and who to tell first."""
    general = aware_at + timedelta(days=15)
    fast = aware_at + timedelta(days=2)
    death = aware_at + timedelta(days=10)
    duty: list[str] = []
    if system.role in (Role.deployer, Role.provider_and_deployer):
        contact = system.model.provider_contact or "the provider (no contact in the inventory)"
        duty.append(f"As deployer: if serious, inform the provider first and immediately ({contact}), then "
                    "the importer/distributor and the market surveillance authority (Art. 26(5)); if the "
                    "provider cannot be reached, the provider's Art. 73 duties are yours (Art. 26(5)); suspend "
                    "use on a suspected Art. 79(1) risk.")
    if system.role in (Role.provider, Role.provider_and_deployer):
        duty.append("As provider: report a serious incident to the market surveillance authority of each "
                    "Member State where it occurred (Art. 73(1)); an incomplete initial report is allowed "
                    "(Art. 73(5)); do not alter the system in a way that affects cause analysis before "
                    "informing the authorities (Art. 73(6)): snapshot model, config and logs first.")
    return {
        "assessment_required": True,
        "question": "Is this a serious incident (Art. 3(49)): death or serious harm to health, serious "
                    "and irreversible disruption of critical infrastructure, infringement of obligations "
                    "protecting fundamental rights, or serious harm to property or the environment?",
        "aware_at": aware_at.isoformat(),
        "deadlines": {
            "general_art_73_2": general.isoformat(),
            "widespread_or_critical_infrastructure_art_73_3": fast.isoformat(),
            "death_art_73_4": death.isoformat(),
        },
        "applicable_deadline": (fast if system.critical_infrastructure else general).isoformat(),
        "critical_infrastructure": system.critical_infrastructure,
        "role": system.role.value,
        "duties": duty,
    }


def _ratio(value: float, threshold: float, *, floor: bool) -> float:
    if value != value or threshold != threshold or threshold == 0 or value == 0:
        return 1.0
    return abs(threshold / value) if floor else abs(value / threshold)


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if isinstance(v, str | int | float | bool | list | dict | None)}


def _markdown(summary: str, data: dict[str, Any]) -> str:
    sysd, owner = data["system"], data["owner"]
    out = [
        "## What happened", "", summary, "",
        f"Window: {data['window']['start']} to {data['window']['end']}", "",
        "## System", "",
        f"- {sysd['name']} (`{sysd['id']}`), model {sysd['model']}",
        f"- Purpose: {sysd['purpose']}",
        f"- Role: {sysd['role']}; risk tier: {sysd['risk_tier']}; EU AI Act high-risk: "
        f"{'yes' if sysd['eu_ai_act_high_risk'] else 'no'}",
        f"- Impact assessment: {sysd['impact_assessment_ref'] or 'none recorded'}",
        f"- Owner: {owner['team']} ({owner['contact']})"
        + (f"; escalate to {owner['escalation']}" if owner.get("escalation") else ""),
        "",
        "## What to check first", "",
    ]
    out += [f"{i}. {step}" for i, step in enumerate(data["triage"], 1)]
    groups = data.get("affected_groups") or []
    if groups:
        out += ["", "## Affected groups", "", ", ".join(str(g) for g in groups)]
    groups_table = data["measurement"].get("groups")
    if isinstance(groups_table, list) and groups_table:
        out += ["", "| group | count | selection rate | TPR | FPR | judged |", "|---|---|---|---|---|---|"]
        for g in groups_table[:50]:
            out.append(f"| {g.get('group')} | {g.get('count')} | {_f(g.get('selection_rate'))} | "
                       f"{_f(g.get('true_positive_rate'))} | {_f(g.get('false_positive_rate'))} | "
                       f"{'yes' if g.get('judged') else 'no'} |")
    cols = data["measurement"].get("columns")
    if isinstance(cols, list) and cols:
        out += ["", "| column | method | score | threshold | drifted |", "|---|---|---|---|---|"]
        for c in sorted(cols, key=lambda c: not c.get("drifted"))[:50]:
            out.append(f"| {c.get('column')} | {c.get('method')} | {_f(c.get('score'))} | "
                       f"{_f(c.get('threshold'))} | {'**yes**' if c.get('drifted') else 'no'} |")
    out += ["", "## Controls and risks", "", "- Controls: " + ", ".join(data["controls"])]
    if data["risk_register_ids"]:
        out.append("- Risk register: " + ", ".join(data["risk_register_ids"]))
    if "eu_ai_act" in data:
        eu = data["eu_ai_act"]
        out += ["", "## EU AI Act serious-incident assessment (Art. 73)", "", eu["question"], "",
                f"- Aware since: {eu['aware_at']}",
                f"- Report by (general, 15 days): {eu['deadlines']['general_art_73_2']}",
                f"- Report by (widespread infringement or critical infrastructure, 2 days): "
                f"{eu['deadlines']['widespread_or_critical_infrastructure_art_73_3']}",
                f"- Report by (death, 10 days): {eu['deadlines']['death_art_73_4']}"]
        out += [f"- {d}" for d in eu["duties"]]
    if data["links"]:
        out += ["", "## Links", ""] + [f"- {k}: {v}" for k, v in data["links"].items()]
    return "\n".join(out) + "\n"


def _f(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4g}"
    return "n/a" if v is None else str(v)
