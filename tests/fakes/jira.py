"""Fake Jira Cloud REST v3: issues, ADF comments, workflow transitions, and an eventually consistent
``/rest/api/3/search/jql`` (a new issue shows up only after ``search_lag`` later searches); the removed
``/rest/api/3/search`` answers 410 as Jira Cloud does.

Rate limit: Jira Cloud enforces burst limits per tenant and answers 429 with ``Retry-After``,
``X-RateLimit-Limit``, ``X-RateLimit-Remaining: 0``, ``X-RateLimit-Reset`` (ISO 8601) and
``RateLimit-Reason``; the fake allows ``burst`` requests at once, refilled at ``per_second``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.http_server import FakeService, Limit, Reply, Request, TokenBucket, retry_after

TRANSITIONS: list[dict[str, Any]] = [
    {"id": "11", "name": "To Do", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {"id": "21", "name": "In Progress", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
    {"id": "41", "name": "Done", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
]


def _is_adf(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1 and isinstance(
        doc.get("content"), list)


class FakeJira(FakeService):
    def __init__(self, *, email: str, token: str, project: str = "MM", search_lag: int = 2, burst: int = 100,
                 per_second: float = 10.0) -> None:
        super().__init__()
        self.email, self.token, self.project, self.search_lag = email, token, project, search_lag
        self.issues: dict[str, dict[str, Any]] = {}
        self.hidden: dict[str, int] = {}  # key -> searches left before it is indexed
        self.comments: dict[str, list[Any]] = {}
        self.created = 0
        self.limits = [Limit("jira-burst-based", TokenBucket(burst, per_second))]

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        reset = datetime.fromtimestamp(self.clock(), UTC) + timedelta(seconds=wait)
        return Reply(429, {"errorMessages": ["Rate limit exceeded."], "errors": {}}, {
            "Retry-After": retry_after(wait), "X-RateLimit-Limit": str(int(limit.bucket.capacity)),
            "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.isoformat(timespec="milliseconds"),
            "RateLimit-Reason": limit.name})

    # -- what a person does in Jira ---------------------------------------------------------------
    def delete_issue(self, key: str) -> None:
        with self.lock:
            self.issues.pop(key, None)
            self.comments.pop(key, None)

    def close_by_hand(self, key: str) -> None:
        with self.lock:
            self.issues[key]["fields"]["status"] = dict(TRANSITIONS[-1]["to"])

    def handle(self, req: Request) -> Reply:
        if req.basic_auth() != (self.email, self.token):
            return Reply(401, {"errorMessages": ["You are not authenticated."], "errors": {}})
        p = req.path
        if p == "/rest/api/3/search":
            return Reply(410, {"errorMessages": ["The requested API has been removed. Please migrate to "
                                                 "/rest/api/3/search/jql."], "errors": {}})
        if p == "/rest/api/3/search/jql" and req.method == "GET":
            return self._search(req.arg("jql"))
        if p == "/rest/api/3/issue" and req.method == "POST":
            return self._create(req.json())
        m = re.fullmatch(r"/rest/api/3/issue/([A-Z]+-\d+)(/comment|/transitions)?", p)
        if not m or m.group(1) not in self.issues:
            return Reply(404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                               "errors": {}})
        issue = self.issues[m.group(1)]
        if m.group(2) == "/comment" and req.method == "POST":
            body = req.json().get("body")
            if not _is_adf(body):
                return Reply(400, {"errorMessages": [], "errors": {"comment": "Comment body is not valid ADF."}})
            self.comments.setdefault(issue["key"], []).append(body)
            return Reply(201, {"id": str(len(self.comments[issue["key"]]))})
        if m.group(2) == "/comment" and req.method == "GET":
            return Reply(200, {"comments": [{"body": b} for b in self.comments.get(issue["key"], [])],
                               "startAt": 0, "maxResults": 50, "total": len(self.comments.get(issue["key"], []))})
        if m.group(2) == "/transitions" and req.method == "GET":
            return Reply(200, {"transitions": TRANSITIONS})
        if m.group(2) == "/transitions" and req.method == "POST":
            tid = req.json().get("transition", {}).get("id")
            target = next((t for t in TRANSITIONS if t["id"] == tid), None)
            if target is None:
                return Reply(400, {"errorMessages": [f"Transition id '{tid}' is not valid for this issue."],
                                   "errors": {}})
            issue["fields"]["status"] = dict(target["to"])
            return Reply(204)
        if m.group(2) is None and req.method == "PUT":
            issue["fields"].update(req.json().get("fields", {}))
            return Reply(204)
        if m.group(2) is None and req.method == "GET":
            return Reply(200, issue)
        return Reply(405, {"errorMessages": ["Method not allowed"], "errors": {}})

    def _create(self, body: dict[str, Any]) -> Reply:
        fields = body.get("fields", {})
        errors: dict[str, str] = {}
        if fields.get("project", {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if not _is_adf(fields.get("description")):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        if any(" " in label for label in fields.get("labels", [])):
            errors["labels"] = "The label must not contain spaces."
        if errors:
            return Reply(400, {"errorMessages": [], "errors": errors})
        self.created += 1
        n = self.created
        key = f"{self.project}-{n}"
        self.issues[key] = {"id": str(10000 + n), "key": key, "fields": {
            **fields, "status": {"name": "To Do", "statusCategory": {"key": "new"}}}}
        self.hidden[key] = self.search_lag
        return Reply(201, {"id": str(10000 + n), "key": key, "self": f"{self.url}/rest/api/3/issue/{10000 + n}"})

    def _search(self, jql: str) -> Reply:
        label = re.search(r'labels\s*=\s*"([^"]+)"', jql)
        not_done = "statusCategory != Done" in jql
        found = []
        for key, issue in self.issues.items():
            if self.hidden.get(key, 0) > 0:
                self.hidden[key] -= 1
                continue
            f = issue["fields"]
            if label and label.group(1) not in f.get("labels", []):
                continue
            if not_done and f["status"]["statusCategory"]["key"] == "done":
                continue
            found.append({"id": issue["id"], "key": key, "fields": {"status": f["status"]}})
        return Reply(200, {"issues": list(reversed(found)), "isLast": True})

    def catch_up(self) -> None:
        """The search index has caught up with every write."""
        self.hidden.clear()

    def open_issues(self) -> list[dict[str, Any]]:
        return [i for i in self.issues.values() if i["fields"]["status"]["statusCategory"]["key"] != "done"]
