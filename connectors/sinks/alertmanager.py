"""Alertmanager shell (API v2): each open incident is a firing alert labelled with its fingerprint.

Alertmanager deduplicates on the label set, so a repeated post is the same alert. A firing alert is
posted with ``endsAt = now + hold`` and must be posted again before that passes, the way Prometheus
does: the outbox calls ``refresh`` with every open incident every ``refresh_every_s``. Resolve posts
the same labels with the original ``startsAt`` and ``endsAt = now`` (which must be later). Severity is
a label, so when it changes the alert under the old severity is ended in the same post.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from connectors.base import Notice, TicketRef
from connectors.sinks.http import SEVERITIES, HttpClient, MessageMemo, SinkSettings, wall_clock

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class AlertmanagerSinkConfig(SinkSettings):
    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(pattern=r"^https?://", description="Alertmanager root, e.g. http://alertmanager:9093")
    alertname: str = "AIIncident"
    extra_labels: dict[str, str] = Field(default_factory=dict, description="added to every alert (e.g. team)")
    hold_s: float = Field(default=900.0, gt=0, description="endsAt of a firing alert is this far ahead")
    refresh_every_s: float = Field(default=60.0, gt=0, description="re-post open incidents this often")
    generator_url: str | None = Field(default=None, description="link shown in Alertmanager (e.g. the agent's UI)")
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="basic auth, when a proxy guards Alertmanager")
    bearer_token: SecretStr | None = None

    @field_validator("extra_labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _LABEL_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid label names: {bad}")
        return v


class AlertmanagerSink:
    config_model: ClassVar[type[AlertmanagerSinkConfig]] = AlertmanagerSinkConfig
    kind: ClassVar[str] = "event"

    def __init__(self, config: AlertmanagerSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 clock: Callable[[], datetime] = wall_clock, **_: Any) -> None:
        self.config = config
        self.clock = clock
        self.refresh_every = timedelta(seconds=config.refresh_every_s)
        secrets: list[str] = []
        headers: dict[str, str] = {}
        auth: httpx.Auth | tuple[str, str] | None = None
        if config.bearer_token is not None:
            secrets.append(config.bearer_token.get_secret_value())
            headers["Authorization"] = f"Bearer {secrets[-1]}"
        if config.username and config.password is not None:
            secrets.append(config.password.get_secret_value())
            auth = (config.username, secrets[-1])
        self.http = HttpClient(base_url=f"{config.url.rstrip('/')}/api/v2", settings=config, secrets=secrets,
                               headers=headers, auth=auth, label=name or "alertmanager")
        self.memo = MessageMemo()

    def describe(self) -> str:
        return f"alertmanager {self.config.url}"

    def labels(self, notice: Notice, severity: str | None = None) -> dict[str, str]:
        return {**self.config.extra_labels, "alertname": self.config.alertname,
                "aims_fingerprint": notice.fingerprint, "system": notice.system_id, "kind": notice.kind,
                "subject": notice.subject, "severity": severity or notice.severity}

    def _alert(self, notice: Notice, *, ends: datetime, severity: str | None = None) -> dict[str, Any]:
        starts = min(notice.started_at, self.clock())
        ends = max(ends, starts + timedelta(seconds=1))  # Alertmanager rejects endsAt <= startsAt
        alert: dict[str, Any] = {
            "labels": self.labels(notice, severity),
            "annotations": {"summary": notice.title, "description": notice.summary[:4000],
                            "incident_id": str(notice.incident_id),
                            "status": notice.labels.get("status", notice.action)},
            "startsAt": starts.isoformat(), "endsAt": ends.isoformat(),
        }
        if self.config.generator_url:
            alert["generatorURL"] = self.config.generator_url
        return alert

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        done = self.memo.get(notice.message_id)
        if done is not None:
            return done
        now = self.clock()
        ref = TicketRef(remote_id=f"{notice.fingerprint}:{notice.severity}", url=self._url(notice))
        if notice.action == "resolve":
            alerts = [self._alert(notice, ends=now)]
        else:
            alerts = [self._alert(notice, ends=now + timedelta(seconds=self.config.hold_s))]
        before = known.remote_id.rpartition(":")[2] if known is not None else ""
        if before in SEVERITIES and before != notice.severity:
            alerts.append(self._alert(notice, ends=now, severity=before))
        self.http.request("POST", "/alerts", json=alerts)
        return self.memo.put(notice.message_id, ref)

    def refresh(self, notices: Sequence[Notice]) -> None:
        """Post every open incident again so none of them times out while it still holds."""
        if not notices:
            return
        ends = self.clock() + timedelta(seconds=self.config.hold_s)
        self.http.request("POST", "/alerts", json=[self._alert(n, ends=ends) for n in notices])

    def _url(self, notice: Notice) -> str:
        return f"{self.config.url.rstrip('/')}/#/alerts?filter=%7Baims_fingerprint%3D%22{notice.fingerprint}%22%7D"
