"""GitHub Issues shell: one issue per incident, found again by an ``aiinc-<fingerprint>`` label.

``GET /repos/{owner}/{repo}/issues?state=open&labels=...`` finds the open issue (pull requests, which
the endpoint also returns, are skipped); updates are comments; resolve closes the issue with
``state_reason: completed``; a recurrence opens a new issue or reopens the last one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from config.errors import PermanentSinkError
from connectors.base import Notice, TicketRef
from connectors.sinks.http import HttpClient, TicketSink, TicketSinkSettings, TicketState, expect_object


class GitHubSinkConfig(TicketSinkSettings):
    type: Literal["github"] = "github"
    url: str = Field(default="https://api.github.com", pattern=r"^https?://")
    token: SecretStr = Field(description="fine-grained token with Issues: read and write")
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    labels: list[str] = Field(default_factory=lambda: ["ai-incident"])
    severity_labels: dict[str, str] = Field(default_factory=dict, description="severity -> extra label")


class GitHubSink(TicketSink):
    config_model: ClassVar[type[GitHubSinkConfig]] = GitHubSinkConfig

    def __init__(self, config: GitHubSinkConfig, *, base_dir: Path | None = None, name: str = "",
                 **_: Any) -> None:
        super().__init__()
        self.settings = self.config = config
        token = config.token.get_secret_value()
        self.http = HttpClient(
            base_url=f"{config.url.rstrip('/')}/repos/{config.repository}", settings=config, secrets=[token],
            label=name or "github",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "aims-agent"})

    def describe(self) -> str:
        return f"github issues of {self.config.repository}"

    @staticmethod
    def label(fingerprint: str) -> str:
        return f"aiinc-{fingerprint}"

    @staticmethod
    def _ref(issue: dict[str, Any]) -> TicketRef:
        return TicketRef(remote_id=str(issue["number"]), url=issue.get("html_url"))

    def find_open(self, notice: Notice) -> TicketRef | None:
        labels = ",".join([*self.config.labels, self.label(notice.fingerprint)])
        issues = self.http.json("GET", "/issues", params={"state": "open", "labels": labels, "per_page": 10})
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict) and "pull_request" not in issue:
                return self._ref(issue)
        return None

    def create(self, notice: Notice) -> TicketRef:
        labels = [*self.config.labels, self.label(notice.fingerprint)]
        if notice.severity in self.config.severity_labels:
            labels.append(self.config.severity_labels[notice.severity])
        body = f"{notice.body_markdown}\n\n<!-- aims-fingerprint: {notice.fingerprint} -->\n"
        issue = expect_object(self.http.json("POST", "/issues", json={"title": notice.title[:256], "body": body,
                                                                      "labels": labels}), "github")
        if "number" not in issue:
            raise PermanentSinkError("github answered the create without an issue number")
        return self._ref(issue)

    def state(self, ref: TicketRef) -> TicketState:
        # a deleted issue answers 410 Gone; one the token can no longer see (or a wrong number) 404
        resp = self.http.request("GET", f"/issues/{ref.remote_id}", allow=(404, 410))
        if resp.status_code in (404, 410):
            return "gone"
        issue = expect_object(self.http.decode(resp), "github")
        return "closed" if issue.get("state") == "closed" else "open"

    def has_comment(self, ref: TicketRef, marker: str) -> bool:
        # comments come oldest first; a retried message's comment is among the last, so read the first
        # page and, on a long thread, the last two
        path = f"/issues/{ref.remote_id}/comments"
        first = self.http.request("GET", path, params={"per_page": 100})
        pages = [self.http.decode(first)]
        last = _last_page(first.headers.get("link", ""))
        for page in sorted({p for p in (last - 1, last) if p > 1}):
            pages.append(self.http.json("GET", path, params={"per_page": 100, "page": page}))
        return any(marker in str(c.get("body")) for got in pages if isinstance(got, list)
                   for c in got if isinstance(c, dict))

    def add_comment(self, ref: TicketRef, text: str) -> None:
        self.http.request("POST", f"/issues/{ref.remote_id}/comments", json={"body": text})

    def set_severity(self, ref: TicketRef, notice: Notice) -> None:
        """A severity label is set when the issue is opened; later changes are in the comments, because
        relabelling would drop labels people added by hand."""

    def close(self, ref: TicketRef, notice: Notice) -> None:
        self.http.request("PATCH", f"/issues/{ref.remote_id}", json={"state": "closed", "state_reason": "completed"})

    def reopen(self, ref: TicketRef, notice: Notice) -> None:
        self.http.request("PATCH", f"/issues/{ref.remote_id}", json={"state": "open", "state_reason": "reopened"})


def _last_page(link: str) -> int:
    """The page number of ``rel="last"`` in a Link header; 1 when there is none."""
    m = re.search(r'[?&]page=(\d+)[^>]*>;\s*rel="last"', link)
    return int(m.group(1)) if m else 1
