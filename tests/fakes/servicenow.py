"""Fake ServiceNow Table API for ``incident``: create, encoded-query lookup, PATCH with work notes (kept
in the ``sys_journal_field`` table, one row per entry, as the platform does), and the data policy that
resolving (state 6) needs a close code and close notes.

Rate limit: an instance's inbound REST rate-limit rule counts requests per user per hour and answers
429 with ``Retry-After``, ``X-RateLimit-Limit``, ``X-RateLimit-Reset`` (Unix seconds) and
``X-RateLimit-Rule``; the fake's rule allows ``per_hour`` requests.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes.http_server import FakeService, Limit, Reply, Request, TokenBucket, retry_after


def _error(status: int, message: str, detail: str = "") -> Reply:
    return Reply(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


class FakeServiceNow(FakeService):
    def __init__(self, *, username: str, password: str, per_hour: int = 3600) -> None:
        super().__init__()
        self.auth = (username, password)
        self.records: dict[str, dict[str, Any]] = {}
        self.journal: list[dict[str, str]] = []  # sys_journal_field rows, oldest first
        self.limits = [Limit("rate limit rule", TokenBucket(per_hour, per_hour / 3600))]

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        return Reply(429, {"error": {"message": "Rate limit exceeded",
                                     "detail": f"Exceeded the rate limit of {int(limit.bucket.capacity)} requests "
                                               "per hour for this user"}, "status": "failure"},
                     {"Retry-After": retry_after(wait), "X-RateLimit-Limit": str(int(limit.bucket.capacity)),
                      "X-RateLimit-Reset": str(int(self.clock() + wait) + 1),
                      "X-RateLimit-Rule": "0123456789abcdef0123456789abcdef"})

    def delete_record(self, sys_id: str) -> None:
        with self.lock:
            self.records.pop(sys_id, None)

    def close_by_hand(self, sys_id: str) -> None:
        with self.lock:
            self.records[sys_id].update({"state": "7", "close_code": "Closed/Resolved by Caller"})

    def _journal(self, req: Request) -> Reply:
        terms = dict(t.split("=", 1) for t in req.arg("sysparm_query").split("^") if "=" in t)
        wanted = {"work_notes", "comments"}
        for t in req.arg("sysparm_query").split("^"):
            if t.startswith("elementIN"):
                wanted = set(t.removeprefix("elementIN").split(","))
        rows = [r for r in reversed(self.journal) if r["element_id"] == terms.get("element_id")
                and r["element"] in wanted]
        fields = [f for f in req.arg("sysparm_fields").split(",") if f]
        limit = int(req.arg("sysparm_limit", "10000"))
        return Reply(200, {"result": [{k: r[k] for k in fields} if fields else r for r in rows[:limit]]})

    def handle(self, req: Request) -> Reply:
        if req.basic_auth() != self.auth:
            return _error(401, "User Not Authenticated", "Required to provide Auth information")
        if req.path == "/api/now/table/sys_journal_field" and req.method == "GET":
            return self._journal(req)
        m = re.fullmatch(r"/api/now/table/incident(?:/([0-9a-f]{32}))?", req.path)
        if not m:
            return _error(400, "Invalid table", req.path)
        sys_id = m.group(1)
        if sys_id is None and req.method == "POST":
            body = req.json()
            if not body.get("short_description"):
                return _error(400, "Mandatory field missing", "short_description")
            sys_id = uuid.uuid4().hex
            rec: dict[str, Any] = {**{k: str(v) for k, v in body.items()}, "sys_id": sys_id, "state": "1",
                   "number": f"INC{10000 + len(self.records) + 1:07d}", "work_notes_list": []}
            self.records[sys_id] = rec
            return Reply(201, {"result": {k: v for k, v in rec.items() if k != "work_notes_list"}})
        if sys_id is None and req.method == "GET":
            return Reply(200, {"result": self._query(req)})
        if sys_id not in self.records:
            return _error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
        rec = self.records[sys_id]
        if req.method == "PATCH":
            body = {k: str(v) for k, v in req.json().items()}
            resolving = body.get("state") == "6"
            if resolving and not all(body.get(k) or rec.get(k) for k in ("close_code", "close_notes")):
                return _error(403, "Operation Failed", "Data Policy Exception: Resolution code, Resolution notes")
            for element in ("work_notes", "comments"):
                if element in body:
                    text = body.pop(element)
                    if element == "work_notes":
                        rec["work_notes_list"].append(text)
                    self.journal.append({"sys_id": uuid.uuid4().hex, "element_id": sys_id, "element": element,
                                         "name": "incident", "value": text})
            rec.update(body)
            return Reply(200, {"result": {k: v for k, v in rec.items() if k != "work_notes_list"}})
        fields = [f for f in req.arg("sysparm_fields").split(",") if f]
        shown = {k: v for k, v in rec.items() if k != "work_notes_list"}
        return Reply(200, {"result": {k: shown[k] for k in fields if k in shown} if fields else shown})

    def _query(self, req: Request) -> list[dict[str, Any]]:
        query = req.arg("sysparm_query")
        limit = int(req.arg("sysparm_limit", "10000"))
        fields = [f for f in req.arg("sysparm_fields").split(",") if f]
        out = []
        for rec in reversed(list(self.records.values())):
            ok = True
            for term in query.split("^"):
                if term.startswith("ORDERBY") or not term:
                    continue
                if "NOT IN" in term:
                    name, values = term.split("NOT IN")
                    ok &= rec.get(name) not in values.split(",")
                elif "=" in term:
                    name, value = term.split("=", 1)
                    ok &= rec.get(name) == value
            if ok:
                out.append({k: rec[k] for k in fields} if fields else rec)
        return out[:limit]

    def open_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r["state"] not in ("6", "7", "8")]
