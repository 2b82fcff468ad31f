"""E-mail shell (SMTP): one message per change, threaded per incident.

Every message of one incident carries ``References``/``In-Reply-To`` to the same thread id, so mail
clients group them; the ``Message-ID`` is derived from the outbox message id, so a receiver (or an
archive) can drop a redelivered copy. SMTP 4xx replies and connection failures are retried; 5xx
replies and failed authentication are permanent.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError, RetryableSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HostGuard, MessageMemo, SinkSettings

VERB = {"open": "OPEN", "update": "UPDATE", "resolve": "RESOLVED"}


class EmailSinkConfig(SinkSettings):
    type: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    domain: str = Field(default="aims-agent.local", description="right-hand side of Message-IDs")

    model_config = {"extra": "forbid", "populate_by_name": True}


class EmailSink:
    config_model: ClassVar[type[EmailSinkConfig]] = EmailSinkConfig
    kind: ClassVar[str] = "message"

    def __init__(self, config: EmailSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        self.config = config
        self.guard = HostGuard(config.allowed_hosts, default_urls=[f"smtp://{config.host}"])
        self.memo = MessageMemo()

    def describe(self) -> str:
        return f"e-mail via {self.config.host}:{self.config.port} to {', '.join(self.config.to)}"

    def message(self, notice: Notice) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[AIMS {VERB[notice.action]}] [{notice.severity}] {notice.title}"
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(notice.occurred_at.timestamp(), usegmt=True)
        msg["Message-ID"] = f"<aims.{notice.fingerprint}.{notice.incident_id}.{notice.message_id}@{self.config.domain}>"
        thread = f"<aims.{notice.fingerprint}.{notice.incident_id}@{self.config.domain}>"
        if notice.action != "open":
            msg["In-Reply-To"] = thread
            msg["References"] = thread
        msg["X-Aims-Fingerprint"] = notice.fingerprint
        msg["X-Aims-Action"] = notice.action
        body = notice.body_markdown if notice.action == "open" else f"{notice.summary}\n\n---\n{notice.body_markdown}"
        msg.set_content(f"{notice.summary}\n\n{body}" if notice.action == "open" else body)
        return msg

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        cfg = self.config
        self.guard.check(cfg.host, cfg.port)
        msg = self.message(notice)
        try:
            smtp: smtplib.SMTP
            if cfg.security == "ssl":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username and cfg.password is not None:
                    smtp.login(cfg.username, cfg.password.get_secret_value())
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSinkError(f"smtp {cfg.host}: authentication failed ({exc.smtp_code})") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            err = RetryableSinkError if all(400 <= c < 500 for c in codes) else PermanentSinkError
            raise err(f"smtp {cfg.host}: recipients refused {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            err = RetryableSinkError if 400 <= exc.smtp_code < 500 else PermanentSinkError
            raise err(f"smtp {cfg.host}: {exc.smtp_code} {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableSinkError(f"smtp {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from exc
        return self.memo.put(notice.message_id, TicketRef(remote_id=msg["Message-ID"]))
