"""Opsgenie shell (Alert API v2): one alert per incident with ``alias = fingerprint``.

Opsgenie keeps at most one open alert per alias, so a repeated create bumps its count instead of
duplicating it. Updates are notes (plus acknowledge and priority changes), resolve closes the alert.
Notes, acknowledgements and closes carry the message's marker in their note, so a retried or
redelivered message that finds its note on the alert does not post it again; an update for an alert
closed or deleted in Opsgenie while the incident is still open creates the alert again.
The API answers 202 and processes requests asynchronously. Opsgenie is being retired by Atlassian
(end of support 5 April 2027); the API works until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from connectors.base import Notice, Reinstated, TicketRef
from connectors.sinks.http import HttpClient, MessageMemo, SinkSettings, expect_object, message_marker, ticket_text

OgPriority = Literal["P1", "P2", "P3", "P4", "P5"]
SOURCE = "aims-agent"


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
        ref = TicketRef(remote_id=notice.fingerprint)
        if notice.action == "open":
            self._create(notice)
        elif notice.action == "update":
            state = self._alert_state(notice)
            if state != "open":  # closed or deleted in Opsgenie while the incident is open: alert again
                self._create(notice)
                ref = TicketRef(remote_id=notice.fingerprint,
                                reinstated=Reinstated(notice.fingerprint, state, "new"))
            if notice.labels.get("status") == "acknowledged":
                self._once(notice, "acknowledge")
            else:
                self._once(notice, "notes")
                self.http.request("PUT", self._by_alias(notice, "priority"), json={"priority": self._priority(notice)})
        else:
            self._once(notice, "close")
        return self.memo.put(notice.message_id, ref)

    def _priority(self, notice: Notice) -> OgPriority:
        return self.config.priorities.get(notice.severity, "P3")

    def _create(self, notice: Notice) -> None:
        """Opsgenie keeps one open alert per alias: creating it again only bumps its count."""
        alert: dict[str, Any] = {
            "message": notice.title[:130], "alias": notice.fingerprint,
            "description": notice.body_markdown[:15000], "priority": self._priority(notice),
            "tags": [*self.config.tags, notice.kind], "entity": notice.system_id, "source": SOURCE,
            "details": {"subject": notice.subject, "incident_id": str(notice.incident_id), "severity": notice.severity},
        }
        if self.config.responders:
            alert["responders"] = self.config.responders
        self.http.request("POST", "", json=alert)

    def _once(self, notice: Notice, what: str) -> None:
        """Notes, acknowledge and close each carry the message's note; one already there was applied."""
        if not self.has_note(notice, message_marker(notice)):
            self.http.request("POST", self._by_alias(notice, what),
                              json={"note": ticket_text(notice)[:25000], "source": SOURCE})

    def _alert_state(self, notice: Notice) -> Literal["open", "closed", "gone"]:
        resp = self.http.request("GET", f"/{notice.fingerprint}", params={"identifierType": "alias"}, allow=(404,))
        if resp.status_code == 404:
            return "gone"
        data = expect_object(self.http.decode(resp), "opsgenie").get("data") or {}
        return "closed" if isinstance(data, dict) and data.get("status") == "closed" else "open"

    def has_note(self, notice: Notice, marker: str) -> bool:
        resp = self.http.request("GET", f"/{notice.fingerprint}/notes", allow=(404,),
                                 params={"identifierType": "alias", "order": "desc", "limit": 100})
        if resp.status_code == 404:
            return False
        notes = expect_object(self.http.decode(resp), "opsgenie").get("data") or []
        return any(marker in str(n.get("note") or "") for n in notes if isinstance(n, dict))
