"""Fake Opsgenie Alert API v2: GenieKey auth, one open alert per alias, notes/acknowledge/close/priority by
alias, the alert and its notes readable by alias, 202 with a requestId (asynchronous processing), 422 on
invalid bodies.

Rate limit: Opsgenie limits each request domain with a token bucket and answers 429 with
``X-RateLimit-State: THROTTLED`` and no ``Retry-After``; the fake's Alert domain allows ``per_minute``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.fakes.http_server import FakeService, Limit, Reply, Request, TokenBucket


def _accepted() -> Reply:
    return Reply(202, {"result": "Request will be processed", "took": 0.01, "requestId": str(uuid.uuid4())})


class FakeOpsgenie(FakeService):
    def __init__(self, *, api_key: str, per_minute: int = 600) -> None:
        super().__init__()
        self.api_key = api_key
        self.alerts: list[dict[str, Any]] = []
        self.limits = [Limit("alert", TokenBucket(per_minute, per_minute / 60))]

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        return Reply(429, {"message": "You are making too many requests! To avoid errors, we recommend you limit "
                                      "requests.", "took": 0.0, "requestId": str(uuid.uuid4())},
                     {"X-RateLimit-State": "THROTTLED", "X-RateLimit-Period-In-Sec": "60"})

    def open_alert(self, alias: str) -> dict[str, Any] | None:
        return next((a for a in self.alerts if a["alias"] == alias and a["status"] == "open"), None)

    def by_alias(self, alias: str) -> dict[str, Any] | None:
        """The open alert with the alias, else the latest closed one (as identifierType=alias resolves)."""
        return self.open_alert(alias) or next((a for a in reversed(self.alerts) if a["alias"] == alias), None)

    def close_by_hand(self, alias: str) -> None:
        with self.lock:
            alert = self.open_alert(alias)
            assert alert is not None
            alert["status"] = "closed"

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
        one = re.fullmatch(r"/v2/alerts/([^/]+)", req.path)
        if one and req.method == "GET" and req.arg("identifierType") == "alias":
            found = self.by_alias(one.group(1))
            if found is None:
                return Reply(404, {"message": "Alert does not exist", "took": 0.0, "requestId": str(uuid.uuid4())})
            return Reply(200, {"data": {"alias": found["alias"], "status": found["status"], "count": found["count"],
                                        "acknowledged": found["acknowledged"], "priority": found.get("priority")},
                               "took": 0.0, "requestId": str(uuid.uuid4())})
        m = re.fullmatch(r"/v2/alerts/([^/]+)/(notes|acknowledge|close|priority)", req.path)
        if not m or req.arg("identifierType") != "alias":
            return Reply(404, {"message": "Not found", "took": 0.0, "requestId": str(uuid.uuid4())})
        if m.group(2) == "notes" and req.method == "GET":
            found = self.by_alias(m.group(1))
            if found is None:
                return Reply(404, {"message": "Alert does not exist", "took": 0.0, "requestId": str(uuid.uuid4())})
            notes = [{"note": n, "owner": "aims-agent"} for n in found["notes"]]
            if req.arg("order", "asc") == "desc":
                notes.reverse()
            return Reply(200, {"data": notes[:int(req.arg("limit", "20"))], "took": 0.0,
                               "requestId": str(uuid.uuid4())})
        alert = self.open_alert(m.group(1))
        if alert is not None:  # as the real API: accepted now, failing later if the alert is unknown
            body = req.json() or {}
            if m.group(2) == "notes":
                alert["notes"].append(body.get("note"))
            elif m.group(2) == "acknowledge":
                alert["acknowledged"] = True
                if body.get("note"):
                    alert["notes"].append(body["note"])
            elif m.group(2) == "priority":
                alert["priority"] = body.get("priority")
            else:
                alert["status"] = "closed"
                if body.get("note"):
                    alert["notes"].append(body["note"])
        return _accepted()
