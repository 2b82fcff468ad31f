"""Opsgenie shell (Alert API v2): one alert per incident with ``alias = fingerprint``.

Opsgenie keeps at most one open alert per alias, so a repeated create bumps its count instead of
duplicating it. Updates are notes (plus acknowledge and priority changes), resolve closes the alert.
The API answers 202 and processes requests asynchronously. Opsgenie is being retired by Atlassian
(end of support 5 April 2027); the API works until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, MessageMemo, SinkSettings, ticket_text

OgPriority = Literal["P1", "P2", "P3", "P4", "P5"]


def _default_priorities() -> dict[str, OgPriority]:
    return {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4"}


class OpsgenieSinkConfig(SinkSettings):
    type: Literal["opsgenie"] = "opsgenie"
    url: str = Field(default="https://api.opsgenie.com", pattern=r"^https?://",
                     description="https://api.eu.opsgenie.com for the EU instance")
    api_key: SecretStr = Field(description="an integration API key (account keys cannot create alerts)")
    priorities: dict[str, OgPriority] = Field(default_factory=_default_priorities)
    tags: list[str] = Field(default_factory=lambda: ["ai-incident"])
    responders: list[dict[str, str]] = Field(default_factory=list,
                                             description='e.g. [{"type": "team", "name": "ML Platform"}]')


class OpsgenieSink:
    config_model: ClassVar[type[OpsgenieSinkConfig]] = OpsgenieSinkConfig
    kind: ClassVar[str] = "event"

    def __init__(self, config: OpsgenieSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        self.config = config
        key = config.api_key.get_secret_value()
        self.http = HttpClient(base_url=f"{config.url.rstrip('/')}/v2/alerts", settings=config, secrets=[key],
                               label=name or "opsgenie", headers={"Authorization": f"GenieKey {key}"})
        self.memo = MessageMemo()

    def describe(self) -> str:
        return f"opsgenie {self.config.url}"

    def _by_alias(self, notice: Notice, what: str) -> str:
        return f"/{notice.fingerprint}/{what}?identifierType=alias"

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        priority = self.config.priorities.get(notice.severity, "P3")
        source = "aims-agent"
        if notice.action == "open":
            alert: dict[str, Any] = {
                "message": notice.title[:130], "alias": notice.fingerprint,
                "description": notice.body_markdown[:15000], "priority": priority,
                "tags": [*self.config.tags, notice.kind], "entity": notice.system_id, "source": source,
                "details": {"subject": notice.subject, "incident_id": str(notice.incident_id),
                            "severity": notice.severity},
            }
            if self.config.responders:
                alert["responders"] = self.config.responders
            self.http.request("POST", "", json=alert)
        elif notice.action == "update":
            note = {"note": ticket_text(notice)[:25000], "source": source}
            if notice.labels.get("status") == "acknowledged":
                self.http.request("POST", self._by_alias(notice, "acknowledge"), json=note)
            else:
                self.http.request("POST", self._by_alias(notice, "notes"), json=note)
                self.http.request("PUT", self._by_alias(notice, "priority"), json={"priority": priority})
        else:
            self.http.request("POST", self._by_alias(notice, "close"),
                              json={"note": ticket_text(notice)[:25000], "source": source})
        return self.memo.put(notice.message_id, TicketRef(remote_id=notice.fingerprint))
