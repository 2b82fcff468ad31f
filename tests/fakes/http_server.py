"""A loopback HTTP server for fakes of SaaS incident tools: records requests, injects faults.

A fake subclasses ``FakeService`` and implements ``handle``; ``fail_next`` makes the next requests
answer with a chosen status (e.g. 429 with Retry-After, or 503) before the fake's own logic runs.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
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


class FakeService:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Reply] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- the test's controls --------------------------------------------------------------------
    def fail_next(self, reply: Reply, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([reply] * times)

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

    # -- plumbing ---------------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            if self.faults:
                return self.faults.pop(0)
            return self.handle(req)

    def start(self) -> Self:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
