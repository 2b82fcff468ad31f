"""Fake ServiceNow Table API for ``incident``: create, encoded-query lookup, PATCH with work notes, and
the data policy that resolving (state 6) needs a close code and close notes."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes.http_server import FakeService, Reply, Request


def _error(status: int, message: str, detail: str = "") -> Reply:
    return Reply(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


class FakeServiceNow(FakeService):
    def __init__(self, *, username: str, password: str) -> None:
        super().__init__()
        self.auth = (username, password)
        self.records: dict[str, dict[str, Any]] = {}

    def handle(self, req: Request) -> Reply:
        if req.basic_auth() != self.auth:
            return _error(401, "User Not Authenticated", "Required to provide Auth information")
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
            if "work_notes" in body:
                rec["work_notes_list"].append(body.pop("work_notes"))
            rec.update(body)
            return Reply(200, {"result": {k: v for k, v in rec.items() if k != "work_notes_list"}})
        return Reply(200, {"result": rec})

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
