"""Generic webhook shell: the notice as JSON, signed with HMAC-SHA256 so the receiver can trust it.

Headers: ``X-Aims-Timestamp`` (Unix seconds), ``X-Aims-Signature: sha256=<hex>`` where the hex is
HMAC-SHA256(secret, f"{timestamp}.{raw body}"), ``X-Aims-Message-Id`` and ``X-Aims-Fingerprint``. The
message id is stable across retries, so a receiver deduplicates on it; ``verify`` is the reference
check a receiver can copy (constant-time comparison, bounded clock skew against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, MessageMemo, SinkSettings

SIGNATURE_HEADER = "X-Aims-Signature"
TIMESTAMP_HEADER = "X-Aims-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, *, timestamp: str, signature: str, body: bytes, tolerance_s: float = 300.0,
           now: float | None = None) -> bool:
    """True if ``signature`` signs ``timestamp.body`` with ``secret`` and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSinkConfig(SinkSettings):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr = Field(description="shared HMAC key; the receiver verifies the signature with it")
    headers: dict[str, str] = Field(default_factory=dict, description="extra (non-secret) headers")


class WebhookSink:
    config_model: ClassVar[type[WebhookSinkConfig]] = WebhookSinkConfig
    kind: ClassVar[str] = "message"

    def __init__(self, config: WebhookSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        self.config = config
        self.secret = config.secret.get_secret_value().encode()
        self.http = HttpClient(base_url=config.url, settings=config, secrets=[config.secret.get_secret_value()],
                               label=name or "webhook", headers=config.headers)
        self.memo = MessageMemo()

    def describe(self) -> str:
        # host only: some receivers put a token in the path or query, and describe() reaches the evidence
        return f"webhook to {urlsplit(self.config.url).hostname}"

    @staticmethod
    def payload(notice: Notice) -> dict[str, Any]:
        return {
            "message_id": notice.message_id, "action": notice.action, "fingerprint": notice.fingerprint,
            "incident_id": notice.incident_id, "system": notice.system_id, "kind": notice.kind,
            "subject": notice.subject, "severity": notice.severity, "title": notice.title,
            "summary": notice.summary, "body_markdown": notice.body_markdown,
            "occurred_at": notice.occurred_at.isoformat(), "started_at": notice.started_at.isoformat(),
            "labels": dict(notice.labels), "content": dict(notice.content),
        }

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        body = json.dumps(self.payload(notice), sort_keys=True, default=str, separators=(",", ":")).encode()
        ts = str(int(time.time()))
        self.http.request("POST", self.config.url, content=body, headers={
            "Content-Type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self.secret, ts, body),
            "X-Aims-Message-Id": str(notice.message_id), "X-Aims-Fingerprint": notice.fingerprint})
        return self.memo.put(notice.message_id, TicketRef(remote_id=f"webhook:{notice.fingerprint}"))
