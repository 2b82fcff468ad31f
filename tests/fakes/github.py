"""Fake GitHub Issues REST API: Bearer auth, API-version header, issues with labels (the list endpoint
returns pull requests too, as GitHub does), comments paged with a ``Link`` header, close with
``state_reason``, and 410 Gone for a deleted issue.

Rate limits, as GitHub documents them: the primary limit (5,000 requests an hour for a token) answers
403 with ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset`` (Unix seconds); the secondary limit on
content-creating requests (80 a minute) answers 403 with ``retry-after``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.http_server import FakeService, Limit, Reply, Request, TokenBucket, retry_after

WRITES = {"POST", "PATCH", "PUT", "DELETE"}

REASONS = {"completed", "not_planned", "reopened", "duplicate", None}


class FakeGitHub(FakeService):
    def __init__(self, *, token: str, repo: str, per_hour: int = 5000, writes_per_minute: int = 80) -> None:
        super().__init__()
        self.token, self.repo = token, repo
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[str]] = {}
        self.deleted: set[int] = set()
        self.limits = [
            Limit("primary", TokenBucket(per_hour, per_hour / 3600)),
            Limit("secondary", TokenBucket(writes_per_minute, writes_per_minute / 60), lambda r: r.method in WRITES),
        ]

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        if limit.name == "primary":
            return Reply(403, {"message": "API rate limit exceeded for user ID 1.",
                               "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
                         {"x-ratelimit-limit": str(int(limit.bucket.capacity)), "x-ratelimit-remaining": "0",
                          "x-ratelimit-reset": str(int(self.clock() + wait) + 1), "x-ratelimit-resource": "core"})
        return Reply(403, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                                      "you try again.",
                           "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"},
                     {"retry-after": retry_after(wait)})

    def delete_issue(self, n: int) -> None:
        with self.lock:
            self.issues.pop(n, None)
            self.deleted.add(n)

    def close_by_hand(self, n: int) -> None:
        with self.lock:
            self.issues[n].update({"state": "closed", "state_reason": "not_planned"})

    def add_pull_request(self, labels: list[str]) -> None:
        n = max([*self.issues, *self.deleted], default=0) + 1
        self.issues[n] = {"number": n, "title": "a pull request", "state": "open", "pull_request": {"url": "x"},
                          "labels": [{"name": x} for x in labels], "html_url": f"https://github.test/pull/{n}"}

    def handle(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if req.headers.get("x-github-api-version") != "2022-11-28":
            return Reply(400, {"message": "Unsupported API version"})
        base = f"/repos/{self.repo}/issues"
        if req.path == base and req.method == "POST":
            body = req.json()
            if not body.get("title"):
                return Reply(422, {"message": "Validation Failed",
                                   "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]})
            n = max([*self.issues, *self.deleted], default=0) + 1
            self.issues[n] = {"number": n, "title": body["title"], "body": body.get("body"), "state": "open",
                              "state_reason": None, "labels": [{"name": x} for x in body.get("labels", [])],
                              "html_url": f"https://github.test/{self.repo}/issues/{n}"}
            return Reply(201, self.issues[n])
        if req.path == base and req.method == "GET":
            wanted = {x for x in req.arg("labels").split(",") if x}
            state = req.arg("state", "open")
            out = [i for i in self.issues.values()
                   if (state == "all" or i["state"] == state) and wanted <= {x["name"] for x in i["labels"]}]
            return Reply(200, sorted(out, key=lambda i: -i["number"]))
        m = re.fullmatch(rf"{re.escape(base)}/(\d+)(/comments)?", req.path)
        if m and int(m.group(1)) in self.deleted:
            return Reply(410, {"message": "This issue was deleted", "documentation_url": "https://docs.github.com/rest"})
        if not m or int(m.group(1)) not in self.issues:
            return Reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        n = int(m.group(1))
        issue = self.issues[n]
        if m.group(2) and req.method == "GET":
            everything = [{"id": i + 1, "body": b} for i, b in enumerate(self.comments.get(n, []))]
            per_page, page = min(100, int(req.arg("per_page", "30"))), int(req.arg("page", "1"))
            last = max(1, -(-len(everything) // per_page))
            link = ", ".join(f'<{self.url}{req.path}?per_page={per_page}&page={p}>; rel="{rel}"'
                             for rel, p in (("next", page + 1), ("last", last)) if page < last)
            return Reply(200, everything[(page - 1) * per_page:page * per_page], {"Link": link} if link else {})
        if m.group(2) and req.method == "POST":
            self.comments.setdefault(n, []).append(req.json()["body"])
            return Reply(201, {"id": len(self.comments[n]), "body": req.json()["body"]})
        if req.method == "PATCH":
            body = req.json()
            if body.get("state_reason") not in REASONS or body.get("state") not in ("open", "closed", None):
                return Reply(422, {"message": "Validation Failed"})
            issue.update({k: body[k] for k in ("state", "state_reason", "title") if k in body})
            return Reply(200, issue)
        return Reply(200, issue)
