"""HTTP pull source against a local JSON server: cursor and page pagination, auth from secrets, faults."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from config.errors import SourceQueryError, SourceUnavailable
from config.model import HttpSourceConfig
from connectors.sources.http import HttpSource

T0 = datetime(2026, 5, 1, tzinfo=UTC)
TOKEN = "Bearer s3cret-token"
RECORDS = [{"ts": (T0 + timedelta(minutes=7 * i)).isoformat(), "x": i, "colour": "red"} for i in range(25)]


class Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def log_message(self, *_: Any) -> None:
        return

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        Handler.seen.append({"path": url.path, "q": q, "auth": self.headers.get("Authorization")})
        if self.headers.get("Authorization") != TOKEN:
            return self._send(401, {"error": "unauthorised"})
        if url.path == "/slow":
            time.sleep(2)
            return self._send(200, {"data": []})
        if url.path == "/broken":
            return self._send(503, {"error": "down"})
        if url.path == "/cursor":
            pos = int(q.get("cursor", "0"))
            page = RECORDS[pos:pos + 10]
            nxt = str(pos + 10) if pos + 10 < len(RECORDS) else None
            return self._send(200, {"result": {"items": page}, "meta": {"next": nxt}})
        if url.path == "/pages":
            page, size = int(q["page"]), int(q["page_size"])
            return self._send(200, {"data": RECORDS[(page - 1) * size:page * size]})
        return self._send(404, {})

    def _send(self, code: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:
            return  # the client gave up (the timeout test): nothing to answer


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Handler.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _src(**kw: Any) -> HttpSource:
    return HttpSource(HttpSourceConfig.model_validate({"auth_value": TOKEN, **kw}), timestamp_column="ts")


def test_cursor_pagination_reads_every_page_with_the_auth_header(server: str) -> None:
    src = _src(url=f"{server}/cursor", records="result.items", pagination="cursor", cursor_field="meta.next",
               start_param="from", end_param="to")
    got = src.read_window(T0, T0 + timedelta(hours=1), columns=["ts", "x"])
    assert got["x"].tolist() == [i for i in range(25) if 7 * i < 60]
    assert len(Handler.seen) == 3
    assert all(s["auth"] == TOKEN for s in Handler.seen)
    assert Handler.seen[0]["q"]["from"] == T0.isoformat()
    src.close()


def test_page_pagination_stops_at_the_first_empty_page(server: str) -> None:
    src = _src(url=f"{server}/pages", pagination="page", page_size=10)
    assert len(src.read_all(columns=["ts", "x", "colour"])) == 25
    assert [s["q"]["page"] for s in Handler.seen] == ["1", "2", "3", "4"]
    src.close()


def test_a_wrong_token_is_a_query_error_and_the_secret_is_not_in_it(server: str) -> None:
    src = HttpSource(HttpSourceConfig(url=f"{server}/pages", pagination="page", auth_value="Bearer wrong"),
                     timestamp_column="ts")
    with pytest.raises(SourceQueryError) as err:
        src.read_all(columns=["x"])
    assert "401" in str(err.value) and "wrong" not in str(err.value)
    assert "wrong" not in repr(src.config)


def test_a_slow_endpoint_times_out_as_unavailable(server: str) -> None:
    src = _src(url=f"{server}/slow", timeout_s=0.5)
    t = time.monotonic()
    with pytest.raises(SourceUnavailable, match="timed out"):
        src.read_all(columns=["x"])
    assert time.monotonic() - t < 3


def test_a_failing_endpoint_is_unavailable(server: str) -> None:
    with pytest.raises(SourceUnavailable, match="503"):
        _src(url=f"{server}/broken").read_all(columns=["x"])


def test_a_bounded_total_body_size(server: str) -> None:
    src = _src(url=f"{server}/pages", pagination="page", page_size=10, max_bytes=1024)
    with pytest.raises(SourceQueryError, match="max_bytes"):
        src.read_all(columns=["x"])
