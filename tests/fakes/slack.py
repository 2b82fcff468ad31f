"""Fake Slack incoming webhook: 200 ``ok`` for a valid payload, the documented plain-text errors
otherwise (``invalid_payload``, ``invalid_blocks``, ``no_service``).

Rate limit: about one message a second per webhook, with short bursts allowed; over it Slack answers
429 with ``Retry-After`` (seconds). The fake allows ``burst`` messages at once, refilled at one a second.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.http_server import FakeService, Limit, Reply, Request, TokenBucket, retry_after

BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image"}


class FakeSlack(FakeService):
    def __init__(self, *, path: str = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", burst: int = 10) -> None:
        super().__init__()
        self.path = path
        self.messages: list[dict[str, Any]] = []
        self.limits = [Limit("messages", TokenBucket(burst, 1.0), lambda r: r.method == "POST")]

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        return Reply(429, text="rate_limited", headers={"Retry-After": retry_after(wait)})

    @property
    def webhook_url(self) -> str:
        return self.url + self.path

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != self.path:
            return Reply(404, text="no_service")
        try:
            body = req.json()
        except ValueError:
            return Reply(400, text="invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return Reply(400, text="invalid_payload")
        for block in body.get("blocks", []):
            if block.get("type") not in BLOCK_TYPES:
                return Reply(400, text="invalid_blocks")
            if block["type"] == "header" and len(block["text"]["text"]) > 150:
                return Reply(400, text="invalid_blocks")
            if block["type"] == "section" and len(block.get("text", {}).get("text", "")) > 3000:
                return Reply(400, text="invalid_blocks")
        self.messages.append(body)
        return Reply(200, text="ok")
