"""Request Tracker shell (REST 2.0): one ticket per incident, keyed by the "Incident key" custom field.

The open ticket is found with TicketSQL (``Status='__Active__' AND 'CF.{Incident key}'='<fingerprint>'``)
before one is created; updates are comments, resolve sets the ticket resolved, a recurrence opens a
new ticket or reopens the last one. A comment already in the ticket's history (its attachments) is not
posted again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, TicketSink, TicketSinkSettings, TicketState, expect_object


class RequestTrackerSinkConfig(TicketSinkSettings):
    type: Literal["rt"] = "rt"
    url: str = Field(pattern=r"^https?://", description="RT's web root, e.g. https://rt.example.com")
    token: SecretStr = Field(description="an RT auth token (sent as 'Authorization: token ...')")
    queue: str = "General"
    incident_key_field: str = Field(default="Incident key", description="name of the ticket custom field")
    priorities: dict[str, int] = Field(default_factory=lambda: {"critical": 90, "high": 70, "medium": 50, "low": 20})
    resolved_status: str = "resolved"
    reopened_status: str = "open"


class RequestTrackerSink(TicketSink):
    config_model: ClassVar[type[RequestTrackerSinkConfig]] = RequestTrackerSinkConfig

    def __init__(self, config: RequestTrackerSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        super().__init__()
        self.settings = self.config = config
        token = config.token.get_secret_value()
        self.root = config.url.rstrip("/")
        self.http = HttpClient(base_url=f"{self.root}/REST/2.0", settings=config, secrets=[token], label=name or "rt",
                               headers={"Authorization": f"token {token}", "Accept": "application/json"})

    def describe(self) -> str:
        return f"request tracker {self.root} queue {self.config.queue}"

    def _ref(self, ticket_id: object) -> TicketRef:
        return TicketRef(remote_id=str(ticket_id), url=f"{self.root}/Ticket/Display.html?id={ticket_id}")

    @staticmethod
    def _quote(value: str) -> str:
        return value.replace("\\", "\\\\").replace("'", "\\'")

    def find_open(self, notice: Notice) -> TicketRef | None:
        q = self._quote
        query = (f"Queue='{q(self.config.queue)}' AND Status='__Active__' AND "
                 f"'CF.{{{q(self.config.incident_key_field)}}}'='{q(notice.fingerprint)}'")
        found = self.http.json("GET", "/tickets", params={"query": query, "orderby": "id", "order": "DESC",
                                                          "per_page": 1})
        items = expect_object(found, "rt").get("items") or []
        return self._ref(items[0]["id"]) if isinstance(items, list) and items else None

    def create(self, notice: Notice) -> TicketRef:
        body = expect_object(self.http.json("POST", "/ticket", json={
            "Queue": self.config.queue, "Subject": notice.title[:200], "Content": notice.body_markdown,
            "ContentType": "text/plain", "Priority": self.config.priorities.get(notice.severity, 50),
            "CustomFields": {self.config.incident_key_field: notice.fingerprint},
        }), "rt")
        if "id" not in body:
            raise PermanentSinkError("rt answered the create without a ticket id")
        return self._ref(body["id"])

    def state(self, ref: TicketRef) -> TicketState:
        resp = self.http.request("GET", f"/ticket/{ref.remote_id}", allow=(404,))
        if resp.status_code == 404:
            return "gone"
        status = str(expect_object(self.http.decode(resp), "rt").get("Status", "")).casefold()
        if status == "deleted":
            return "gone"
        inactive = {"resolved", "rejected", self.config.resolved_status.casefold()}
        return "closed" if status in inactive else "open"

    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        # the ticket's history: the content of every transaction, newest first (a retried message's
        # comment is among the latest)
        page = self.http.json("GET", f"/ticket/{ref.remote_id}/attachments", params={
            "fields": "Content", "orderby": "id", "order": "DESC", "per_page": 100})
        items = expect_object(page, "rt").get("items") or []
        return any(marker in str(a.get("Content") or "") for a in items if isinstance(a, dict))

    def add_comment(self, ref: TicketRef, text: str) -> None:
        self.http.request("POST", f"/ticket/{ref.remote_id}/comment", content=text.encode(),
                          headers={"Content-Type": "text/plain; charset=utf-8"})

    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        self.http.request("PUT", f"/ticket/{ref.remote_id}",
                          json={"Priority": self.config.priorities.get(notice.severity, 50)})

    def close(self, ref: TicketRef, notice: Notice) -> None:
        self.http.request("PUT", f"/ticket/{ref.remote_id}", json={"Status": self.config.resolved_status})

    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        self.http.request("PUT", f"/ticket/{ref.remote_id}", json={"Status": self.config.reopened_status})
