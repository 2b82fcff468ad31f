"""ServiceNow shell (Table API): one incident record per incident, keyed by ``correlation_id``.

The open record is found with ``correlation_id=<fingerprint>`` and a state that is not resolved, closed
or cancelled; updates are work notes (with urgency and impact following the severity); resolve sets
state 6 with a configurable close code and close notes (their choices differ between instances).
A work note already in the record's journal (``sys_journal_field``) is not written again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, TicketSink, TicketSinkSettings, TicketState, expect_object


class ServiceNowSinkConfig(TicketSinkSettings):
    type: Literal["servicenow"] = "servicenow"
    url: str = Field(pattern=r"^https?://", description="instance URL, e.g. https://example.service-now.com")
    username: str = Field(min_length=1)
    password: SecretStr
    table: str = "incident"
    correlation_display: str = "aims-agent"
    urgency_impact: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"critical": (1, 1), "high": (1, 2), "medium": (2, 2), "low": (3, 3)},
        description="severity -> (urgency, impact); 1 is highest")
    category: str | None = None
    assignment_group: str | None = None
    caller_id: str | None = None
    resolved_state: str = "6"
    reopened_state: str = "2"
    close_code: str = Field(default="Solution provided", description="a close_code choice of your instance")
    close_notes: str = "Resolved by aims-agent: the monitored condition recovered."


class ServiceNowSink(TicketSink):
    config_model: ClassVar[type[ServiceNowSinkConfig]] = ServiceNowSinkConfig

    def __init__(self, config: ServiceNowSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        super().__init__()
        self.settings = self.config = config
        password = config.password.get_secret_value()
        self.root = config.url.rstrip("/")
        self.http = HttpClient(base_url=f"{self.root}/api/now/table/{config.table}", settings=config,
                               secrets=[password], label=name or "servicenow", auth=(config.username, password),
                               headers={"Accept": "application/json"})

    def describe(self) -> str:
        return f"servicenow {self.root} table {self.config.table}"

    def _ref(self, sys_id: str) -> TicketRef:
        return TicketRef(remote_id=sys_id, url=f"{self.root}/nav_to.do?uri={self.config.table}.do?sys_id={sys_id}")

    def _urgency(self, notice: Notice) -> dict[str, str]:
        urgency, impact = self.config.urgency_impact.get(notice.severity, (2, 2))
        return {"urgency": str(urgency), "impact": str(impact)}

    def find_open(self, notice: Notice) -> TicketRef | None:
        query = f"correlation_id={notice.fingerprint}^stateNOT IN6,7,8^ORDERBYDESCsys_created_on"
        found = self.http.json("GET", "", params={"sysparm_query": query, "sysparm_fields": "sys_id,number,state",
                                                  "sysparm_limit": 1})
        rows = expect_object(found, "servicenow").get("result") or []
        return self._ref(str(rows[0]["sys_id"])) if isinstance(rows, list) and rows else None

    def create(self, notice: Notice) -> TicketRef:
        record: dict[str, Any] = {
            "short_description": notice.title[:160], "description": notice.body_markdown,
            "correlation_id": notice.fingerprint, "correlation_display": self.config.correlation_display,
            **self._urgency(notice),
        }
        for key in ("category", "assignment_group", "caller_id"):
            if getattr(self.config, key):
                record[key] = getattr(self.config, key)
        result = expect_object(self.http.json("POST", "", json=record), "servicenow").get("result") or {}
        if not isinstance(result, dict) or "sys_id" not in result:
            raise PermanentSinkError("servicenow answered the create without a sys_id")
        return self._ref(str(result["sys_id"]))

    def _patch(self, ref: TicketRef, fields: dict[str, str]) -> None:
        self.http.request("PATCH", f"/{ref.remote_id}", json=fields)

    def state(self, ref: TicketRef) -> TicketState:
        resp = self.http.request("GET", f"/{ref.remote_id}", params={"sysparm_fields": "sys_id,state"}, allow=(404,))
        if resp.status_code == 404:
            return "gone"
        result = expect_object(self.http.decode(resp), "servicenow").get("result") or {}
        state = str(result.get("state", "")) if isinstance(result, dict) else ""
        return "closed" if state in ("6", "7", "8", self.config.resolved_state) else "open"

    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        # work notes and comments live in the journal table, one row per entry (the integration user
        # needs read access to sys_journal_field)
        query = f"element_id={ref.remote_id}^elementINwork_notes,comments^ORDERBYDESCsys_created_on"
        found = self.http.json("GET", f"{self.root}/api/now/table/sys_journal_field", params={
            "sysparm_query": query, "sysparm_fields": "value", "sysparm_limit": 100})
        rows = expect_object(found, "servicenow").get("result") or []
        return any(marker in str(r.get("value") or "") for r in rows if isinstance(r, dict))

    def add_comment(self, ref: TicketRef, text: str) -> None:
        self._patch(ref, {"work_notes": text})

    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        self._patch(ref, self._urgency(notice))

    def close(self, ref: TicketRef, notice: Notice) -> None:
        self._patch(ref, {"state": self.config.resolved_state, "close_code": self.config.close_code,
                          "close_notes": self.config.close_notes})

    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        self._patch(ref, {"state": self.config.reopened_state, **self._urgency(notice)})
