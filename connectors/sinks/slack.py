"""Slack shell (incoming webhook): a message per change, Block Kit blocks plus a plain-text fallback.

An incoming webhook cannot edit or find earlier messages, so Slack does not deduplicate: the only
guard is that this process never posts the same outbox message twice. The webhook URL is the secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, MessageMemo, SinkSettings

EMOJI = {"open": ":rotating_light:", "update": ":arrows_counterclockwise:", "resolve": ":white_check_mark:"}
VERB = {"open": "Opened", "update": "Updated", "resolve": "Resolved"}


class SlackSinkConfig(SinkSettings):
    type: Literal["slack"] = "slack"
    webhook_url: SecretStr = Field(description="https://hooks.slack.com/services/T.../B.../...")
    allowed_hosts: list[str] = Field(default_factory=lambda: ["hooks.slack.com"])
    include_body: bool = Field(default=True, description="add the triage steps to opening messages")


class SlackSink:
    config_model: ClassVar[type[SlackSinkConfig]] = SlackSinkConfig
    kind: ClassVar[str] = "message"

    def __init__(self, config: SlackSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        self.config = config
        self.url = config.webhook_url.get_secret_value()
        # the URL's path is the credential: keep it out of every error message
        self.http = HttpClient(base_url=self.url, settings=config, secrets=[self.url, urlsplit(self.url).path],
                               label=name or "slack",
                               headers={"Content-Type": "application/json"})
        self.memo = MessageMemo()

    def describe(self) -> str:
        return "slack incoming webhook"

    def message(self, notice: Notice) -> dict[str, Any]:
        head = f"{VERB[notice.action]} [{notice.severity.upper()}] {notice.title}"
        text = f"{EMOJI[notice.action]} {head}: {notice.summary}"
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": notice.summary[:3000] or head[:3000]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*System*\n{notice.system_id}"},
                {"type": "mrkdwn", "text": f"*Kind / subject*\n{notice.kind} / {notice.subject}"[:2000]},
                {"type": "mrkdwn", "text": f"*Severity*\n{notice.severity}"},
                {"type": "mrkdwn", "text": f"*Incident*\n#{notice.incident_id}"},
            ]},
        ]
        triage = notice.content.get("triage")
        if self.config.include_body and notice.action == "open" and isinstance(triage, list) and triage:
            steps = "\n".join(f"{i}. {s}" for i, s in enumerate(triage, 1))
            text_steps = f"*What to check first*\n{steps}"[:3000]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text_steps}})
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"fingerprint `{notice.fingerprint}` · {notice.occurred_at.isoformat()}"}]})
        return {"text": text[:3000], "blocks": blocks}

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        self.http.request("POST", self.url, json=self.message(notice))
        return self.memo.put(notice.message_id, TicketRef(remote_id=f"slack:{notice.fingerprint}"))
