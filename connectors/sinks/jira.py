"""Jira Cloud shell (REST v3): one issue per incident, bodies in Atlassian Document Format.

Jira has no external id, so each incident carries a label ``aiinc-<fingerprint>`` and is found with
``GET /rest/api/3/search/jql``. That search is eventually consistent: an issue created a moment ago may
not show up yet, so issues this process created are remembered and used first. Transitions are looked
up by name (their ids differ per workflow).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, TicketSink, TicketSinkSettings, TicketState, expect_object

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+\.\s+(.*)$")


class JiraSinkConfig(TicketSinkSettings):
    type: Literal["jira"] = "jira"
    url: str = Field(pattern=r"^https?://", description="site URL, e.g. https://example.atlassian.net")
    email: str = Field(min_length=3, description="account e-mail of the API token")
    api_token: SecretStr
    project_key: str = Field(min_length=1)
    issue_type: str = "Bug"
    labels: list[str] = Field(default_factory=lambda: ["ai-incident"])
    priorities: dict[str, str] = Field(default_factory=dict,
                                       description="severity -> Jira priority name (e.g. critical: Highest)")
    resolve_transition: str = Field(default="Done", description="transition (or target status) name on resolve")
    reopen_transition: str = Field(default="To Do", description="transition (or target status) name on reopen")
    resolution: str | None = Field(default=None, description="resolution to set with the resolve transition, "
                                   "when the workflow's screen requires one")


def adf(markdown: str) -> dict[str, Any]:
    """A small Markdown subset (headings, bullet and numbered lists, paragraphs) as an ADF document."""
    content: list[dict[str, Any]] = []
    lst: dict[str, Any] | None = None

    def text(s: str) -> list[dict[str, Any]]:
        return [{"type": "text", "text": s}] if s else []

    for line in markdown.splitlines():
        bullet, numbered = _BULLET.match(line), _NUMBERED.match(line)
        if bullet or numbered:
            kind = "bulletList" if bullet else "orderedList"
            if lst is None or lst["type"] != kind:
                lst = {"type": kind, "content": []}
                content.append(lst)
            item = (bullet or numbered).group(1)  # type: ignore[union-attr]
            lst["content"].append({"type": "listItem", "content": [{"type": "paragraph", "content": text(item)}]})
            continue
        lst = None
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        if heading:
            content.append({"type": "heading", "attrs": {"level": len(heading.group(1))},
                            "content": text(heading.group(2))})
        else:
            content.append({"type": "paragraph", "content": text(line)})
    return {"type": "doc", "version": 1, "content": content or [{"type": "paragraph", "content": []}]}


class JiraSink(TicketSink):
    config_model: ClassVar[type[JiraSinkConfig]] = JiraSinkConfig

    def __init__(self, config: JiraSinkConfig, *, base_dir: Path | None = None, name: str = "", **_: Any) -> None:
        super().__init__()
        self.settings = self.config = config
        token = config.api_token.get_secret_value()
        self.site = config.url.rstrip("/")
        self.http = HttpClient(base_url=f"{self.site}/rest/api/3", settings=config, secrets=[token],
                               label=name or "jira", auth=(config.email, token),
                               headers={"Accept": "application/json"})

    def describe(self) -> str:
        return f"jira {self.site} project {self.config.project_key}"

    @staticmethod
    def label(fingerprint: str) -> str:
        return f"aiinc-{fingerprint}"

    def _ref(self, key: str) -> TicketRef:
        return TicketRef(remote_id=key, url=f"{self.site}/browse/{key}")

    def find_open(self, notice: Notice) -> TicketRef | None:
        jql = (f'project = "{self.config.project_key}" AND labels = "{self.label(notice.fingerprint)}" '
               "AND statusCategory != Done ORDER BY created DESC")
        found = self.http.json("GET", "/search/jql", params={"jql": jql, "fields": "status", "maxResults": 1})
        issues = expect_object(found, "jira").get("issues") or []
        return self._ref(str(issues[0]["key"])) if isinstance(issues, list) and issues else None

    def create(self, notice: Notice) -> TicketRef:
        fields: dict[str, Any] = {
            "project": {"key": self.config.project_key},
            "issuetype": {"name": self.config.issue_type},
            "summary": notice.title[:254],
            "labels": [*self.config.labels, self.label(notice.fingerprint)],
            "description": adf(notice.body_markdown),
        }
        if notice.severity in self.config.priorities:
            fields["priority"] = {"name": self.config.priorities[notice.severity]}
        body = expect_object(self.http.json("POST", "/issue", json={"fields": fields}), "jira")
        if "key" not in body:
            raise PermanentSinkError("jira answered the create without an issue key")
        return self._ref(str(body["key"]))

    def state(self, ref: TicketRef) -> TicketState:
        resp = self.http.request("GET", f"/issue/{ref.remote_id}", params={"fields": "status"}, allow=(404,))
        if resp.status_code == 404:
            return "gone"
        body = self.http.decode(resp)
        try:
            category = body["fields"]["status"]["statusCategory"]["key"]
        except (KeyError, TypeError) as exc:
            raise PermanentSinkError(f"jira issue {ref.remote_id}: the answer carries no status category") from exc
        return "closed" if category == "done" else "open"

    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        page = self.http.json("GET", f"/issue/{ref.remote_id}/comment",
                              params={"orderBy": "-created", "maxResults": 100})
        comments = expect_object(page, "jira").get("comments") or []
        return any(marker in adf_text(c.get("body")) for c in comments if isinstance(c, dict))

    def add_comment(self, ref: TicketRef, text: str) -> None:
        self.http.request("POST", f"/issue/{ref.remote_id}/comment", json={"body": adf(text)})

    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        if notice.severity in self.config.priorities:
            self.http.request("PUT", f"/issue/{ref.remote_id}",
                              json={"fields": {"priority": {"name": self.config.priorities[notice.severity]}}})

    def _transition(self, ref: TicketRef, name: str, *, resolution: str | None) -> None:
        listed = self.http.json("GET", f"/issue/{ref.remote_id}/transitions")
        transitions = expect_object(listed, "jira").get("transitions") or []
        wanted = name.casefold()
        chosen = next((t for t in transitions if str(t.get("name", "")).casefold() == wanted), None) or next(
            (t for t in transitions if str(t.get("to", {}).get("name", "")).casefold() == wanted), None)
        if chosen is None:
            names = sorted(str(t.get("name")) for t in transitions)
            raise PermanentSinkError(f"jira issue {ref.remote_id} has no transition {name!r} (available: {names})")
        payload: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        if resolution:
            payload["fields"] = {"resolution": {"name": resolution}}
        self.http.request("POST", f"/issue/{ref.remote_id}/transitions", json=payload)

    def close(self, ref: TicketRef, notice: Notice) -> None:
        self._transition(ref, self.config.resolve_transition, resolution=self.config.resolution)

    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        self._transition(ref, self.config.reopen_transition, resolution=None)


def adf_text(doc: Any) -> str:
    """The text of an ADF document (or of a plain string body), for finding a marker in it."""
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        return str(doc.get("text", "")) + "".join(adf_text(c) for c in doc.get("content", []) or [])
    if isinstance(doc, list):
        return "".join(adf_text(c) for c in doc)
    return ""

