"""A sink that answers slower than its timeout for a while: deliveries time out, are retried with
backoff, and nothing is lost; every copy the receiver saw carries the same message id to drop repeats."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from agent.schema import OutboxMessage
from tests.conftest import T0, Scenario, free_port
from tests.sinks.agent_rig import agent, route


class SlowReceiver:
    def __init__(self, stall_first: int, stall_s: float) -> None:
        self.stall_left = stall_first
        self.stall_s = stall_s
        self.received: list[dict[str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.received.append({k.lower(): v for k, v in self.headers.items()})
                    stall = receiver.stall_left > 0
                    receiver.stall_left -= 1
                if stall:
                    time.sleep(receiver.stall_s)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_slow_sink_is_retried_until_delivered_and_loses_nothing(scenario: Scenario) -> None:
    rx = SlowReceiver(stall_first=3, stall_s=2.0)
    try:
        route(scenario, {"hook": {"type": "webhook", "url": f"http://127.0.0.1:{rx.port}/aims",
                                  "secret": "s3cret-hook-key", "allowed_hosts": ["127.0.0.1"], "timeout_s": 0.5}})
        for h, shift in enumerate([2.0, 2.0, 0.0]):
            scenario.hour(T0 + timedelta(hours=h), shift=shift)
        a = agent(scenario)
        a.run_system(a.cfg.systems[0].id, T0 + timedelta(hours=3))
        now = T0 + timedelta(hours=3)
        for _ in range(40):  # the outbox's own clock moves on: backoff is measured in it
            a.outbox.deliver_due(now)
            with a.store.session() as s:
                pending = s.execute(select(OutboxMessage).where(OutboxMessage.sink == "hook",
                                                                OutboxMessage.status != "delivered")).scalars().all()
            if not pending:
                break
            now += timedelta(minutes=15)
        with a.store.session() as s:
            msgs = s.execute(select(OutboxMessage).where(OutboxMessage.sink == "hook")).scalars().all()
        assert msgs and all(m.status == "delivered" for m in msgs), "every notification got through"
        assert any(m.attempts > 1 for m in msgs), "the slow answers were timed out and retried"
        ids = {r["x-aims-message-id"] for r in rx.received}
        assert ids == {str(m.id) for m in msgs}, "the receiver saw every message, each under one stable id"
        a.close()
    finally:
        rx.server.shutdown()
