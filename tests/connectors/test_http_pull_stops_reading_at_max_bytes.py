"""The HTTP pull source reads an answer as it streams in and stops at ``max_bytes``.

Before, the whole answer was buffered and only then measured: a 64 MiB (or endless) answer was read
completely, into the agent's memory, before being refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from config.errors import SourceQueryError
from config.model import HttpSourceConfig
from connectors.sources.http import HttpSource

TOTAL = 64 * 1024 * 1024
CHUNK = b'{"data": [' + b'{"x": 1},' * 7000  # ~64 KiB of a JSON answer that never ends in time
LIMIT = 1024 * 1024


class Streaming(BaseHTTPRequestHandler):
    sent: list[int] = []

    def log_message(self, *_: Any) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/announced"):
            self.send_header("Content-Length", str(TOTAL))
        self.end_headers()  # without a length the body runs until the server closes
        sent = 0
        try:
            while sent < TOTAL:
                self.wfile.write(CHUNK)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading and hung up: what this test wants
        finally:
            Streaming.sent.append(sent)


@pytest.fixture
def server() -> Iterator[str]:
    Streaming.sent = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(("path", "message"), [
    ("/endless", "stopped reading after"),
    ("/announced", f"announces {TOTAL} bytes"),
])
def test_a_huge_answer_is_refused_without_being_read_whole(server: str, path: str, message: str) -> None:
    src = HttpSource(HttpSourceConfig(url=f"{server}{path}", max_bytes=LIMIT), timestamp_column="ts")
    try:
        with pytest.raises(SourceQueryError, match="max_bytes") as err:
            src.read_all(columns=["x"])
    finally:
        src.close()
    for _ in range(100):  # the server thread notices the closed connection on its next write
        if Streaming.sent:
            break
        threading.Event().wait(0.05)
    # what left the server is the limit plus what the sockets buffer, far from the 64 MiB answer
    assert Streaming.sent and Streaming.sent[0] < 16 * LIMIT, Streaming.sent
    assert message in str(err.value)
