"""The links an incident carries: its Grafana panel, its evidence record and a report of the period.

Each is built from a configured base URL: ``agent.grafana_url`` (with ``agent.grafana_dashboard_uid``)
for the panel of the shipped dashboard (``deploy/grafana/dashboards/aims-agent.json``) that shows the
incident's kind, with the system selected and the window in range; ``agent.server.external_url`` for
the evidence record (``GET /api/v1/evidence/{seq}``) and the report (``GET /api/v1/evidence/report``).
A link that cannot be built is left out rather than shown as a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from config.model import AgentSettings

DASHBOARD_SLUG = "aims-agent-ai-system-monitoring"
# incident kind -> id of the panel of the shipped dashboard that shows it
PANELS = {
    "drift": 9,  # Share of drifted features
    "prediction_drift": 10,  # Prediction drift
    "bias": 12,  # Fairness gaps by sensitive feature
    "performance": 16,  # Model performance
    "data_quality": 18,  # Data-quality findings
    "collector_down": 21,  # Time since last successful check
    "reassessment": 5,  # Open incidents by system and kind
}
CONTEXT = timedelta(days=1)  # the panel shows this much before the window
REPORT_CONTEXT = timedelta(days=7)  # the report starts this long before the window


@dataclass(frozen=True)
class IncidentLinks:
    grafana_url: str | None = None
    dashboard_uid: str = "aims-agent"
    external_url: str | None = None

    @classmethod
    def from_settings(cls, agent: AgentSettings) -> IncidentLinks:
        return cls(grafana_url=agent.grafana_url, dashboard_uid=agent.grafana_dashboard_uid,
                   external_url=agent.server.external_url)

    def build(self, *, system_id: str, kind: str, evidence_seq: int | None,
              window: tuple[datetime, datetime] | None, now: datetime) -> dict[str, str]:
        start = window[0] if window else now
        links: dict[str, str] = {}
        if self.grafana_url:
            params: dict[str, str | int] = {"var-system": system_id,
                                            "from": int((start - CONTEXT).timestamp() * 1000), "to": "now"}
            if kind in PANELS:
                params["viewPanel"] = PANELS[kind]
            links["grafana"] = (f"{self.grafana_url.rstrip('/')}/d/{quote(self.dashboard_uid, safe='')}/"
                                f"{DASHBOARD_SLUG}?{urlencode(params)}")
        if self.external_url:
            api = f"{self.external_url.rstrip('/')}/api/v1/evidence"
            if evidence_seq is not None:
                links["evidence"] = f"{api}/{evidence_seq}"
            since = (start - REPORT_CONTEXT).isoformat()
            links["report"] = f"{api}/report?{urlencode({'system': system_id, 'since': since})}"
        return links
