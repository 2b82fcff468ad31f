"""A webhook receiver that verifies aims-agent's HMAC signature the way the docs tell users to, and
deduplicates on the message id header."""

from __future__ import annotations

from typing import Any

from connectors.sinks.webhook import verify
from tests.fakes.http_server import FakeService, Reply, Request


class FakeWebhookReceiver(FakeService):
    def __init__(self, *, secret: str) -> None:
        super().__init__()
        self.secret = secret.encode()
        self.accepted: dict[str, Any] = {}
        self.rejected = 0

    def handle(self, req: Request) -> Reply:
        ok = verify(self.secret, timestamp=req.headers.get("x-aims-timestamp", ""),
                    signature=req.headers.get("x-aims-signature", ""), body=req.body)
        if not ok:
            self.rejected += 1
            return Reply(401, {"error": "bad signature"})
        self.accepted.setdefault(req.headers["x-aims-message-id"], req.json())
        return Reply(204)
