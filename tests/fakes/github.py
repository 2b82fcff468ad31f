"""Fake GitHub Issues REST API: Bearer auth, API-version header, issues with labels (the list endpoint
returns pull requests too, as GitHub does), comments, close with ``state_reason``."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.http_server import FakeService, Reply, Request

REASONS = {"completed", "not_planned", "reopened", "duplicate", None}


class FakeGitHub(FakeService):
    def __init__(self, *, token: str, repo: str) -> None:
        super().__init__()
        self.token, self.repo = token, repo
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[str]] = {}

    def add_pull_request(self, labels: list[str]) -> None:
        n = len(self.issues) + 1
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
            n = len(self.issues) + 1
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
        if not m or int(m.group(1)) not in self.issues:
            return Reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        n = int(m.group(1))
        issue = self.issues[n]
        if m.group(2) and req.method == "GET":
            return Reply(200, [{"id": i + 1, "body": b} for i, b in enumerate(self.comments.get(n, []))])
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
