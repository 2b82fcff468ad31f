"""Redmine shell: one issue per incident, found again by the fingerprint in an issue custom field.

Lookup-then-create (``GET /issues.json?cf_N=<fingerprint>&status_id=open``) means a lost local map
still finds the open issue. Updates are journal notes (with the priority moved to the new severity);
resolve sets a configurable closed status; a recurrence opens a new issue or reopens the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, TicketSink, TicketSinkSettings, TicketState, expect_object


class RedmineSinkConfig(TicketSinkSettings):
    type: Literal["redmine"] = "redmine"
    url: str = Field(pattern=r"^https?://", description="base URL of Redmine, e.g. https://redmine.example.com")
    api_key: SecretStr = Field(description="a user's REST API key (sent as X-Redmine-API-Key)")
    project: str = Field(min_length=1, description="project identifier or id")
    incident_key_field_id: int = Field(ge=1, description="id of the issue custom field holding the fingerprint")
    tracker_id: int | None = Field(default=None, description="tracker of new issues; default: the project's first")
    priority_ids: dict[str, int] = Field(default_factory=dict,
                                         description="severity (critical/high/medium/low) -> priority id")
    closed_status_id: int = Field(default=5, ge=1, description="status set on resolve (5 is Closed by default)")
    reopened_status_id: int = Field(default=1, ge=1, description="status set when reopening (1 is New)")


class RedmineSink(TicketSink):
    config_model: ClassVar[type[RedmineSinkConfig]] = RedmineSinkConfig

    def __init__(self, config: RedmineSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        super().__init__()
        self.settings = self.config = config
        key = config.api_key.get_secret_value()
        self.http = HttpClient(base_url=config.url, settings=config, secrets=[key], label=name or "redmine",
                               headers={"X-Redmine-API-Key": key, "Accept": "application/json"})

    def describe(self) -> str:
        return f"redmine {self.config.url} project {self.config.project}"

    def _ref(self, issue_id: object) -> TicketRef:
        return TicketRef(remote_id=str(issue_id), url=f"{self.config.url.rstrip('/')}/issues/{issue_id}")

    def _priority(self, notice: Notice) -> dict[str, int]:
        pid = self.config.priority_ids.get(notice.severity)
        return {"priority_id": pid} if pid else {}

    def find_open(self, notice: Notice) -> TicketRef | None:
        found = self.http.json("GET", "/issues.json", params={
            "project_id": self.config.project, "status_id": "open",
            f"cf_{self.config.incident_key_field_id}": notice.fingerprint, "limit": 1, "sort": "id:desc"})
        issues = expect_object(found, "redmine").get("issues") or []
        return self._ref(issues[0]["id"]) if isinstance(issues, list) and issues else None

    def create(self, notice: Notice) -> TicketRef:
        issue: dict[str, Any] = {
            "project_id": self.config.project,
            "subject": notice.title[:255],
            "description": notice.body_markdown,
            "custom_fields": [{"id": self.config.incident_key_field_id, "value": notice.fingerprint}],
            **self._priority(notice),
        }
        if self.config.tracker_id:
            issue["tracker_id"] = self.config.tracker_id
        body = expect_object(self.http.json("POST", "/issues.json", json={"issue": issue}), "redmine")
        try:
            return self._ref(body["issue"]["id"])
        except (KeyError, TypeError) as exc:
            raise PermanentSinkError("redmine answered the create without an issue id") from exc

    def _put(self, ref: TicketRef, fields: dict[str, Any]) -> None:
        self.http.request("PUT", f"/issues/{ref.remote_id}.json", json={"issue": fields})

    def state(self, ref: TicketRef) -> TicketState:
        resp = self.http.request("GET", f"/issues/{ref.remote_id}.json", allow=(404,))
        if resp.status_code == 404:
            return "gone"
        status = expect_object(expect_object(self.http.decode(resp), "redmine").get("issue"), "redmine").get(
            "status") or {}
        closed = status.get("is_closed") if isinstance(status, dict) else None
        if closed is None:  # before Redmine 5.1 the status carries no is_closed: compare with ours
            closed = isinstance(status, dict) and status.get("id") == self.config.closed_status_id
        return "closed" if closed else "open"

    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        issue = expect_object(self.http.json("GET", f"/issues/{ref.remote_id}.json", params={"include": "journals"}),
                              "redmine").get("issue") or {}
        return any(marker in str(j.get("notes") or "") for j in issue.get("journals", []) if isinstance(j, dict))

    def add_comment(self, ref: TicketRef, text: str) -> None:
        self._put(ref, {"notes": text})

    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        if self._priority(notice):
            self._put(ref, self._priority(notice))

    def close(self, ref: TicketRef, notice: Notice) -> None:
        self._put(ref, {"status_id": self.config.closed_status_id})

    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        self._put(ref, {"status_id": self.config.reopened_status_id})
