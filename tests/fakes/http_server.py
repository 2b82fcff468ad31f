"""A loopback HTTP server for fakes of SaaS incident tools: records requests, enforces rate limits,
injects faults.

A fake subclasses ``FakeService`` and implements ``handle``. Before it runs, in this order:

* ``fail_next`` answers the next requests with a chosen reply (e.g. 503, or 429 with Retry-After);
* ``outage`` answers every request (or those a predicate picks) with a reply until ``recover``;
* the fake's own rate limits (``limits``: token buckets, as the tools document them) answer with the
  tool's own throttling reply (``throttled``) once a bucket is empty.

Time is ``clock`` (seconds), the wall clock unless a test drives it, so a test can let simulated hours
pass for the rate limits as it does for the outbox.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if self.text is not None:
            return self.text.encode(), "text/plain; charset=utf-8"
        if self.body is None:
            return b"", "application/json"
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class TokenBucket:
    """``capacity`` requests at once, refilled at ``per_second``: a documented limit of N per period is
    ``TokenBucket(N, N / period)``."""

    capacity: float
    per_second: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float) -> float | None:
        """None when the request may pass; otherwise the seconds until it would."""
        if self.tokens < 0:
            self.tokens, self.at = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.per_second


@dataclass
class Limit:
    """A named rate limit applied to the requests ``applies`` picks."""

    name: str
    bucket: TokenBucket
    applies: Callable[[Request], bool] = lambda _req: True


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


class FakeService:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Reply] = []
        self.down: tuple[Reply, Callable[[Request], bool]] | None = None
        self.limits: list[Limit] = []
        self.throttles: list[tuple[str, Request]] = []  # (limit, request) of every throttled request
        self.clock: Callable[[], float] = time.time
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- the test's controls --------------------------------------------------------------------
    def fail_next(self, reply: Reply, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([reply] * times)

    def outage(self, reply: Reply, when: Callable[[Request], bool] = lambda _req: True) -> None:
        """Answer every request ``when`` picks with ``reply`` until ``recover``."""
        with self.lock:
            self.down = (reply, when)

    def recover(self) -> None:
        with self.lock:
            self.down = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def calls(self, method: str | None = None, prefix: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and r.path.startswith(prefix)]

    # -- to implement -----------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def throttled(self, limit: Limit, req: Request, wait: float) -> Reply:
        """The tool's answer to a request over ``limit``; ``wait`` seconds until it would pass."""
        return Reply(429, {"message": "rate limit exceeded"}, {"Retry-After": retry_after(wait)})

    # -- plumbing ---------------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            if self.faults:
                return self.faults.pop(0)
            if self.down is not None and self.down[1](req):
                return self.down[0]
            now = self.clock()
            for limit in self.limits:
                if limit.applies(req):
                    wait = limit.bucket.take(now)
                    if wait is not None:
                        self.throttles.append((limit.name, req))
                        return self.throttled(limit, req, wait)
            return self.handle(req)

    def start(self) -> Self:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this, Nagle's algorithm and the client's
            # delayed ACK add 40 ms to every answer
            disable_nagle_algorithm = True

            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                try:
                    reply = service._dispatch(req)
                except Exception as exc:  # a bug in a fake must show as a 500, not hang the client
                    reply = Reply(500, {"message": f"fake failed: {exc!r}"})
                data, ctype = reply.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def running(service: FakeService) -> Iterator[FakeService]:
    """For fixtures: start, yield, stop."""
    service.start()
    try:
        yield service
    finally:
        service.stop()
