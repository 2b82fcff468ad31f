"""The AI system inventory as the AIMS register wants it: a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from config.model import AgentConfig

COLUMNS = ["id", "name", "purpose", "owner_team", "owner_contact", "role", "risk_tier", "eu_ai_act_high_risk",
           "impact_assessment_ref", "model_name", "model_version", "lifecycle_stage", "decisions", "data_consumed",
           "risk_register_ids"]


def rows(cfg: AgentConfig) -> list[dict[str, Any]]:
    return [{
        "id": s.id, "name": s.name, "purpose": s.purpose, "owner_team": s.owner.team,
        "owner_contact": s.owner.contact, "role": s.role.value, "risk_tier": s.risk_tier.value,
        "eu_ai_act_high_risk": s.eu_ai_act_high_risk, "impact_assessment_ref": s.impact_assessment_ref or "",
        "model_name": s.model.name, "model_version": s.model.version, "lifecycle_stage": s.lifecycle_stage.value,
        "decisions": s.decisions, "data_consumed": s.data_consumed, "risk_register_ids": s.risk_register_ids,
    } for s in cfg.systems]


def render_inventory(cfg: AgentConfig, fmt: str) -> str:
    data = rows(cfg)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in data:
            w.writerow({k: "; ".join(v) if isinstance(v, list) else v for k, v in r.items()})
        return buf.getvalue()
    shown = ["id", "name", "owner_team", "role", "risk_tier", "eu_ai_act_high_risk", "model_name", "model_version",
             "lifecycle_stage"]
    cells = [[str(r[c]) for c in shown] for r in data]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(shown)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(shown, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines) + "\n"
