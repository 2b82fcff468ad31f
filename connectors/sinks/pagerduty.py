"""PagerDuty shell (Events API v2): trigger, acknowledge and resolve with ``dedup_key = fingerprint``.

PagerDuty deduplicates on the key, so a repeated trigger is the same alert. The routing key travels
in the body (there is no auth header). Severity maps onto PagerDuty's four levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, MessageMemo, SinkSettings

PdSeverity = Literal["critical", "error", "warning", "info"]


def _default_severities() -> dict[str, PdSeverity]:
    return {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDutySinkConfig(SinkSettings):
    type: Literal["pagerduty"] = "pagerduty"
    url: str = Field(default="https://events.pagerduty.com", pattern=r"^https?://",
                     description="use https://events.eu.pagerduty.com for EU service regions")
    routing_key: SecretStr = Field(description="the 32-character integration key of an Events v2 integration")
    source: str = "aims-agent"
    severities: dict[str, PdSeverity] = Field(default_factory=_default_severities)
    client_url: str | None = None


class PagerDutySink:
    config_model: ClassVar[type[PagerDutySinkConfig]] = PagerDutySinkConfig
    kind: ClassVar[str] = "event"

    def __init__(self, config: PagerDutySinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        self.config = config
        self.key = config.routing_key.get_secret_value()
        self.http = HttpClient(base_url=config.url, settings=config, secrets=[self.key], label=name or "pagerduty",
                               headers={"Content-Type": "application/json"})
        self.memo = MessageMemo()

    def describe(self) -> str:
        return f"pagerduty events {self.config.url}"

    def event(self, notice: Notice) -> dict[str, Any]:
        # `open` always triggers: an acknowledgement that happened while the trigger waited in the outbox
        # must not turn it into an acknowledge of an alert PagerDuty never saw (which it ignores)
        if notice.action == "resolve":
            action = "resolve"
        elif notice.action == "update" and notice.labels.get("status") == "acknowledged":
            action = "acknowledge"
        else:
            action = "trigger"
        event: dict[str, Any] = {"routing_key": self.key, "event_action": action, "dedup_key": notice.fingerprint}
        if action == "trigger":
            event["payload"] = {
                "summary": f"{notice.title}: {notice.summary}"[:1024],
                "source": self.config.source,
                "severity": self.config.severities.get(notice.severity, "warning"),
                "timestamp": notice.occurred_at.isoformat(),
                "component": notice.system_id,
                "group": notice.kind,
                "class": notice.kind,
                "custom_details": {"subject": notice.subject, "incident_id": notice.incident_id,
                                   "owner": notice.content.get("owner"), "triage": notice.content.get("triage"),
                                   "controls": notice.content.get("controls")},
            }
            event["client"] = "aims-agent"
            if self.config.client_url:
                event["client_url"] = self.config.client_url
        return event

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        body = self.http.json("POST", "/v2/enqueue", json=self.event(notice))
        key = str(body.get("dedup_key") or notice.fingerprint) if isinstance(body, dict) else notice.fingerprint
        return self.memo.put(notice.message_id, TicketRef(remote_id=key))
