"""Fake PagerDuty Events API v2: ``POST /v2/enqueue`` with validation, dedup on ``dedup_key`` and 202.

Rate limit: 120 events a minute per routing key (integration); over it PagerDuty answers 429
``throttle event`` without a ``Retry-After``, so the client backs off on its own.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.http_server import FakeService, Reply, Request, TokenBucket

ACTIONS = {"trigger", "acknowledge", "resolve"}
SEVERITIES = {"critical", "error", "warning", "info"}


class FakePagerDuty(FakeService):
    def __init__(self, *, routing_key: str, per_minute: int = 120) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.alerts: dict[str, dict[str, Any]] = {}
        self.per_minute = per_minute
        self.buckets: dict[str, TokenBucket] = {}  # per routing key

    def handle(self, req: Request) -> Reply:
        if req.path != "/v2/enqueue" or req.method != "POST":
            return Reply(404, {"status": "not found"})
        ev = req.json()
        errors = []
        if not isinstance(ev.get("routing_key"), str) or len(ev["routing_key"]) != 32:
            errors.append("'routing_key' must be 32 characters")
        if ev.get("event_action") not in ACTIONS:
            errors.append("'event_action' is invalid")
        if len(str(ev.get("dedup_key", ""))) > 255:
            errors.append("'dedup_key' is too long")
        if ev.get("event_action") == "trigger":
            payload = ev.get("payload") or {}
            if not payload.get("summary") or not payload.get("source"):
                errors.append("'payload.summary' and 'payload.source' are required")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid (must be critical, error, warning or info)")
        if errors:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
        bucket = self.buckets.setdefault(ev["routing_key"], TokenBucket(self.per_minute, self.per_minute / 60))
        if bucket.take(self.clock()) is not None:
            self.throttles.append(("events per routing key", req))
            return Reply(429, {"status": "throttle event", "message": "Requests for this service are arriving too "
                                                                       "quickly. Please retry later."})
        if ev["routing_key"] != self.routing_key:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                               "errors": ["Invalid routing key"]})
        key = ev.get("dedup_key") or f"generated-{len(self.alerts)}"
        alert = self.alerts.get(key)
        if ev["event_action"] == "trigger":
            if alert is None or alert["status"] == "resolved":
                self.alerts[key] = {"status": "triggered", "triggers": 1, "payload": ev["payload"],
                                    "incidents": (alert or {}).get("incidents", 0) + 1}
            else:
                alert["triggers"] += 1
                alert["payload"] = ev["payload"]
        elif alert is not None and alert["status"] != "resolved":  # unknown keys are silently ignored
            alert["status"] = "acknowledged" if ev["event_action"] == "acknowledge" else "resolved"
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})
