"""An in-process fake of the slice of CISO Assistant's REST API that ``ciso_assistant`` uses, for contract
tests and for trying the push without a GRC server. Bound to 127.0.0.1 only.

It enforces what the real API does and a client can get wrong: ``Authorization: Token``; limit/offset
pagination (small pages, so clients must follow ``next``); uploads as a raw body with a
``Content-Disposition`` filename (multipart is refused), replacing the revision's file and hashing it
server-side; evidence names unique per folder; M2M lists replaced, not merged, on PATCH.

Switches reproduce what a client must survive: ``fail_uploads`` answers that many uploads with 503 (the
revision stays empty, as when a connection drops mid-upload); ``ignore_urn_filter`` answers requirement
assessment lists unfiltered by URN, as a server that does not know the filter would;
``requirement_as_id`` answers with the requirement node's id (older servers) instead of the nested node,
whose URN is then at ``/api/requirement-nodes/{id}/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE_LIMIT_MAX = 2  # tiny pages: a client that ignores pagination misses items


class FakeCisoAssistant:
    def __init__(self, token: str, *, folder: str | None = None) -> None:
        self.token = token
        self.folder = folder or str(uuid.uuid4())
        self.evidences: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, dict[str, Any]] = {}
        self.requirement_assessments: dict[str, dict[str, Any]] = {}
        self.requirement_nodes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_uploads = 0
        self.ignore_urn_filter = False
        self.requirement_as_id = False
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_audit(self, controls: list[str]) -> str:
        """A compliance assessment with one requirement assessment per Annex A control id given."""
        ca = str(uuid.uuid4())
        for control in controls:
            rid, nid = str(uuid.uuid4()), str(uuid.uuid4())
            node = {"id": nid, "urn": f"urn:intuitem:risk:req_node:iso42001-2023:{control.lower()}",
                    "ref_id": control}
            self.requirement_nodes[nid] = node
            self.requirement_assessments[rid] = {
                "id": rid, "compliance_assessment": ca, "folder": self.folder, "requirement": node,
                "evidences": [], "applied_controls": [], "result": "not_assessed", "status": "to_do"}
        return ca

    # -- server ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeCisoAssistant:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None  # keep test output clean; requests are kept in fake.requests

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                with fake.lock:
                    fake.requests.append((method, parts.path))
                if self.headers.get("Authorization") != f"Token {fake.token}":
                    self._send(401, {"detail": "Invalid token."})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with fake.lock:
                    code, body = fake.route(method, parts.path, query, raw, dict(self.headers.items()))
                self._send(code, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- API ---------------------------------------------------------------------------------------
    def _page(self, items: list[dict[str, Any]], path: str, query: dict[str, str]) -> dict[str, Any]:
        limit = min(int(query.get("limit", PAGE_LIMIT_MAX)), PAGE_LIMIT_MAX)
        offset = int(query.get("offset", 0))
        nxt = None
        if offset + limit < len(items):
            rest = "&".join(f"{k}={v}" for k, v in query.items() if k not in ("limit", "offset"))
            nxt = f"{self.url}{path}?{rest}&limit={limit}&offset={offset + limit}"
        return {"count": len(items), "next": nxt, "previous": None, "results": items[offset:offset + limit]}

    def route(self, method: str, path: str, query: dict[str, str], raw: bytes,
              headers: dict[str, str]) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/(evidences|evidence-revisions|requirement-assessments|requirement-nodes)/"
                         r"(?:([0-9a-f-]+)/)?(upload/)?", path)
        if not m:
            return 404, {"detail": "Not found."}
        resource, oid, upload = m.groups()
        if upload:
            return self._upload(resource, oid, raw, headers)
        if resource == "evidences":
            return self._evidences(method, oid, query, raw)
        if resource == "evidence-revisions":
            return self._revisions(method, oid, query, raw)
        if resource == "requirement-nodes":
            if method == "GET" and oid in self.requirement_nodes:
                return 200, self.requirement_nodes[oid]
            return 404, {"detail": "Not found."}
        return self._assessments(method, oid, query, raw, path)

    def _evidences(self, method: str, oid: str | None, query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if method == "GET" and oid is None:
            items = [e for e in self.evidences.values()
                     if all(str(e.get(k)) == v for k, v in query.items() if k in ("name", "folder"))]
            return 200, self._page(items, "/api/evidences/", query)
        if method == "GET" and oid in self.evidences:
            return 200, self.evidences[oid]
        if method == "POST" and oid is None:
            body = json.loads(raw or b"{}")
            if not body.get("name") or not body.get("folder"):
                return 400, {"name": ["This field is required."]}
            if any(e["name"] == body["name"] and e["folder"] == body["folder"] for e in self.evidences.values()):
                return 400, {"name": ["An evidence with this name already exists in this folder."]}
            eid = str(uuid.uuid4())
            self.evidences[eid] = {"id": eid, "name": body["name"], "description": body.get("description", ""),
                                   "folder": body["folder"], "status": body.get("status", "draft"),
                                   "requirement_assessments": body.get("requirement_assessments", [])}
            self._new_revision(eid, "", None)
            return 201, self.evidences[eid]
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _new_revision(self, evidence: str, observation: str, link: str | None) -> dict[str, Any]:
        version = 1 + max((r["version"] for r in self.revisions.values() if r["evidence"] == evidence), default=0)
        rid = str(uuid.uuid4())
        self.revisions[rid] = {"id": rid, "evidence": evidence, "version": version, "observation": observation,
                               "link": link, "attachment": None, "attachment_hash": None, "content": None}
        return self.revisions[rid]

    def _revisions(self, method: str, oid: str | None, query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        public = [{k: v for k, v in r.items() if k != "content"} for r in self.revisions.values()]
        if method == "GET" and oid is None:
            items = [r for r in public if "evidence" not in query or r["evidence"] == query["evidence"]]
            return 200, self._page(items, "/api/evidence-revisions/", query)
        if method == "GET" and oid in self.revisions:
            return 200, next(r for r in public if r["id"] == oid)
        if method == "POST" and oid is None:
            body = json.loads(raw or b"{}")
            if body.get("evidence") not in self.evidences:
                return 400, {"evidence": ["Invalid pk - object does not exist."]}
            rev = self._new_revision(body["evidence"], str(body.get("observation", "")), body.get("link"))
            self.evidences[body["evidence"]]["status"] = "in_review"
            return 201, {k: v for k, v in rev.items() if k != "content"}
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _upload(self, resource: str, oid: str | None, raw: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        disposition = next((v for k, v in headers.items() if k.lower() == "content-disposition"), "")
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        name = re.search(r'filename="?([^";]+)"?', disposition)
        if ctype.startswith("multipart/") or not name:
            return 400, {"detail": "Missing filename. Request should include a Content-Disposition header with a "
                                   "filename parameter."}
        if resource == "evidences" and oid in self.evidences:
            rev = max((r for r in self.revisions.values() if r["evidence"] == oid), key=lambda r: r["version"])
        elif resource == "evidence-revisions" and oid in self.revisions:
            rev = self.revisions[oid]
        else:
            return 404, {"detail": "Not found."}
        if self.fail_uploads > 0:
            self.fail_uploads -= 1
            return 503, {"detail": "Service unavailable."}
        rev.update(attachment=name.group(1), content=raw, attachment_hash=hashlib.sha256(raw).hexdigest())
        return 200, {"detail": "uploaded"}

    def _assessments(self, method: str, oid: str | None, query: dict[str, str], raw: bytes,
                     path: str) -> tuple[int, Any]:
        if method == "GET" and oid is None:
            by_urn = "requirement__urn" in query and not self.ignore_urn_filter
            items = [self._public_assessment(r) for r in self.requirement_assessments.values()
                     if ("compliance_assessment" not in query or r["compliance_assessment"] == query[
                         "compliance_assessment"])
                     and (not by_urn or r["requirement"]["urn"] == query["requirement__urn"])]
            return 200, self._page(items, "/api/requirement-assessments/", query)
        if oid not in self.requirement_assessments:
            return 404, {"detail": "Not found."}
        ra = self.requirement_assessments[oid]
        if method == "GET":
            return 200, self._public_assessment(ra)
        if method == "PATCH":
            body = json.loads(raw or b"{}")
            for key in ("evidences", "applied_controls"):
                if key in body:  # M2M: the list sent replaces the list stored
                    unknown = [e for e in body[key] if key == "evidences" and e not in self.evidences]
                    if unknown:
                        return 400, {key: [f'Invalid pk "{unknown[0]}" - object does not exist.']}
                    ra[key] = list(body[key])
            for key in ("result", "status", "observation"):
                if key in body:
                    ra[key] = body[key]
            return 200, self._public_assessment(ra)
        return 405, {"detail": f'Method "{method}" not allowed.'}

    def _public_assessment(self, ra: dict[str, Any]) -> dict[str, Any]:
        return {**ra, "requirement": ra["requirement"]["id"]} if self.requirement_as_id else ra
