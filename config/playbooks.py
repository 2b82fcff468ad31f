"""The schema of playbook files (shipped, organisation-wide and per system), validated with every problem
at once: unknown kinds and keys, severity values, severity conditions, and the fields templates use.

A playbook file has one key, ``kinds:``; each kind may set ``title``, ``summary`` (``str.format``
templates), ``severity`` (rules tried in order), ``triage`` and ``controls``. A file laid over another
only needs the kinds and keys it changes, so every key is optional here.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.errors import Problem
from config.model import RiskTier

SEVERITIES = ("critical", "high", "medium", "low")
Severity = Literal["critical", "high", "medium", "low"]

# fields every template may use, filled from the system and the verdict
COMMON_FIELDS = frozenset({
    "system_name", "system_id", "subject", "value", "threshold", "model_name", "model_version", "owner_team",
    "owner_contact", "window_start", "window_end", "detail_text",
})
# the verdict details each kind of incident carries (agent/evaluate.py, agent/risk.py)
KIND_FIELDS: dict[str, frozenset[str]] = {
    "drift": frozenset({"drifted_count", "judged_count"}),
    "prediction_drift": frozenset({"method", "floor"}),
    "bias": frozenset({"metric", "affected", "affected_count", "significant", "floor"}),
    "performance": frozenset({"bound", "labels", "floor"}),
    "data_quality": frozenset(),
    "collector_down": frozenset({"error"}),
    "reassessment": frozenset({"trigger", "reason", "impact_assessment", "trigger_record"}),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class When(_Strict):
    """Conditions of a severity rule; all that are given must hold."""

    risk_tier: list[RiskTier] | None = Field(default=None, description="the system's risk tier is one of these")
    high_risk: bool | None = Field(default=None, description="the system's EU AI Act high-risk flag")
    min_ratio: float | None = Field(default=None, gt=0, description="value/threshold (threshold/value for floors)")
    min_affected_groups: int | None = Field(default=None, ge=1, description="at least this many groups affected")
    affected_groups: list[str] | None = Field(default=None, min_length=1,
                                              description="any of these groups is among the affected")


class SeverityRule(_Strict):
    when: When = Field(default_factory=When)
    severity: Severity


class Playbook(_Strict):
    title: str | None = None
    summary: str | None = None
    severity: list[SeverityRule] | None = None
    triage: list[str] | None = None
    controls: list[str] | None = None


class PlaybookFile(_Strict):
    kinds: dict[str, Playbook]


def template_problems(template: str, kind: str) -> list[str]:
    """What is wrong with a title or summary template of ``kind``: bad syntax or fields no incident fills."""
    allowed = COMMON_FIELDS | KIND_FIELDS.get(kind, frozenset())
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"not a valid template: {exc}"]
    out: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = name.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            out.append("positional fields ({} or {0}) are not filled; name the field")
        elif root not in allowed:
            out.append(f"unknown field {{{root}}} (fields of {kind}: {', '.join(sorted(allowed))})")
    return out


def _schema_problems(exc: ValidationError, prefix: str) -> list[Problem]:
    return [Problem(".".join([prefix, *(str(p) for p in e["loc"])]).strip("."),
                    "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"])) for e in exc.errors()]


def check_playbooks(raw: Any) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """The kinds of a parsed playbook document (only the keys it sets) and every problem in it, each with
    its path inside the file: each kind is checked on its own, so one bad kind hides no other problem."""
    if not isinstance(raw, dict) or not isinstance(raw.get("kinds"), dict):
        try:
            PlaybookFile.model_validate(raw)
        except ValidationError as exc:
            return {}, _schema_problems(exc, "")
        return {}, [Problem("kinds", "must be a mapping of kind -> playbook")]
    problems = [Problem(str(k), "unknown key") for k in raw if k != "kinds"]
    kinds: dict[str, dict[str, Any]] = {}
    for kind, book in raw["kinds"].items():
        where = f"kinds.{kind}"
        if kind not in KIND_FIELDS:
            problems.append(Problem(where, f"unknown kind (known: {', '.join(sorted(KIND_FIELDS))})"))
            continue
        try:
            kinds[str(kind)] = Playbook.model_validate(book).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            problems.extend(_schema_problems(exc, where))
        for key in ("title", "summary"):
            template = book.get(key) if isinstance(book, dict) else None
            if isinstance(template, str):
                problems.extend(Problem(f"{where}.{key}", m) for m in template_problems(template, str(kind)))
    return (kinds if not problems else {}), problems


def read_playbooks(path: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Read and check a playbook file; problems name the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [Problem("", f"cannot read {path}: {exc.strerror}")]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {}, [Problem("", f"{path} is not valid YAML: {exc}")]
    kinds, problems = check_playbooks(raw)
    return kinds, [Problem(p.path, f"{path.name}: {p.message}") for p in problems]
