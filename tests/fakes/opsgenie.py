"""Fake Opsgenie Alert API v2: GenieKey auth, one open alert per alias, notes/acknowledge/close/priority by
alias, 202 with a requestId (asynchronous processing), 422 on invalid bodies."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes.http_server import FakeService, Reply, Request


def _accepted() -> Reply:
    return Reply(202, {"result": "Request will be processed", "took": 0.01, "requestId": str(uuid.uuid4())})


class FakeOpsgenie(FakeService):
    def __init__(self, *, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.alerts: list[dict[str, Any]] = []

    def open_alert(self, alias: str) -> dict[str, Any] | None:
        return next((a for a in self.alerts if a["alias"] == alias and a["status"] == "open"), None)

    def handle(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"GenieKey {self.api_key}":
            return Reply(401, {"message": "Could not authenticate", "took": 0.0, "requestId": str(uuid.uuid4())})
        if req.path == "/v2/alerts" and req.method == "POST":
            body = req.json()
            if not body.get("message") or len(body["message"]) > 130:
                return Reply(422, {"message": "Request body is not processable. Please check the errors.",
                                   "errors": {"message": "Message can not be empty or longer than 130"}})
            if body.get("priority", "P3") not in {"P1", "P2", "P3", "P4", "P5"}:
                return Reply(422, {"message": "Request body is not processable. Please check the errors.",
                                   "errors": {"priority": "should be one of [P1, P2, P3, P4, P5]"}})
            existing = self.open_alert(body.get("alias", ""))
            if existing is not None:
                existing["count"] += 1
            else:
                self.alerts.append({**body, "status": "open", "count": 1, "notes": [], "acknowledged": False})
            return _accepted()
        m = re.fullmatch(r"/v2/alerts/([^/]+)/(notes|acknowledge|close|priority)", req.path)
        if not m or req.arg("identifierType") != "alias":
            return Reply(404, {"message": "Not found", "took": 0.0, "requestId": str(uuid.uuid4())})
        alert = self.open_alert(m.group(1))
        if alert is not None:  # as the real API: accepted now, failing later if the alert is unknown
            body = req.json() or {}
            if m.group(2) == "notes":
                alert["notes"].append(body.get("note"))
            elif m.group(2) == "acknowledge":
                alert["acknowledged"] = True
            elif m.group(2) == "priority":
                alert["priority"] = body.get("priority")
            else:
                alert["status"] = "closed"
        return _accepted()
