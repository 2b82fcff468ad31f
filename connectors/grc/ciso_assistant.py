"""CISO Assistant client: puts an evidence pack into an Evidence (one revision per reporting period) and
links it to the requirement assessments of an ISO 42001 audit, by Annex A URN.

The REST contract (CISO Assistant community, ``backend/core``): ``Authorization: Token <PAT>``;
lists paginate with ``limit``/``offset`` and answer ``{count, next, previous, results}``; a file is
uploaded as the raw request body with ``Content-Disposition: attachment; filename="..."``, and uploading
to an existing revision *replaces* its file, so each push makes a new revision instead and puts our own
SHA-256 in its ``observation`` to cross-check the server's ``attachment_hash``; M2M lists
(``evidences`` of a requirement assessment) are *replaced* on PATCH, so the full list is sent. A push is
idempotent per pack: the revision's observation names the pack, so a retry finds the revision an earlier
attempt made (uploading into it if the file never arrived) instead of adding an empty one. A requirement
assessment is only linked when its requirement's URN and its audit are the ones asked for.

Errors are those of the HTTP sinks: ``RetryableSinkError`` for timeouts, 408, 429 and 5xx,
``PermanentSinkError`` otherwise (bad token, unknown folder, rejected file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.errors import PermanentSinkError
from connectors.sinks.http import HttpClient, SinkSettings

URN_PREFIX = "urn:intuitem:risk:req_node:iso42001-2023:"
PAGE = 100


def requirement_urn(control: str) -> str:
    """``A.6.2.6`` (or ``iso42001:A.6.2.6``) -> CISO Assistant's requirement node URN."""
    return URN_PREFIX + control.removeprefix("iso42001:").lower()


@dataclass
class PushResult:
    evidence_id: str
    revision_id: str
    version: int
    created: bool  # a new Evidence, rather than a new revision of an existing one
    sha256: str  # of the file the revision holds
    uploaded: bool = True  # False: this pack was pushed before, its revision was found and nothing was sent
    linked: list[str] = field(default_factory=list)  # requirement assessment ids
    unmatched: list[str] = field(default_factory=list)  # controls with no requirement assessment in the audit


class CisoAssistant:
    def __init__(self, base_url: str, token: str, *, allowed_hosts: list[str] | None = None,
                 timeout_s: float = 30.0) -> None:
        self.http = HttpClient(base_url=base_url.rstrip("/") + "/api",
                               settings=SinkSettings(allowed_hosts=allowed_hosts or [], timeout_s=timeout_s),
                               headers={"Authorization": f"Token {token}", "Accept": "application/json"},
                               secrets=[token], label="ciso-assistant")
        self._urns: dict[str, str | None] = {}  # requirement node id -> URN

    def close(self) -> None:
        self.http.close()

    def _json(self, method: str, path: str, *, json: Any = None,
              params: Mapping[str, str | int] | None = None) -> Any:
        resp = self.http.request(method, path, json=json, params=params)
        try:
            return resp.json()
        except ValueError as exc:
            raise PermanentSinkError(f"{method} {path}: the answer is not JSON") from exc

    def iterate(self, path: str, params: Mapping[str, str | int] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, page by page (limit/offset)."""
        offset = 0
        while True:
            page = self._json("GET", path, params={**(params or {}), "limit": PAGE, "offset": offset})
            results = page.get("results", []) if isinstance(page, dict) else page
            yield from results
            offset += len(results)
            if not isinstance(page, dict) or not page.get("next") or not results:
                return

    def _upload(self, path: str, filename: str, content: bytes) -> None:
        safe = filename.replace('"', "")
        self.http.request("POST", path, content=content, headers={
            "Content-Disposition": f'attachment; filename="{safe}"', "Content-Type": "application/octet-stream"})

    def find_evidence(self, name: str, folder: str) -> dict[str, Any] | None:
        return next((e for e in self.iterate("/evidences/", {"name": name, "folder": folder})
                     if e.get("name") == name), None)

    def _urn_of(self, assessment: Mapping[str, Any]) -> str | None:
        """The URN of a requirement assessment's requirement node: nested in newer servers' answers, an id
        to look up in older ones."""
        req = assessment.get("requirement")
        if isinstance(req, Mapping):
            return str(req["urn"]) if req.get("urn") else None
        if isinstance(req, str) and req:
            if req not in self._urns:
                node = self._json("GET", f"/requirement-nodes/{req}/")
                self._urns[req] = str(node.get("urn")) if isinstance(node, dict) and node.get("urn") else None
            return self._urns[req]
        return None

    def requirement_assessment(self, compliance_assessment: str, control: str) -> dict[str, Any] | None:
        """The audit's assessment of ``control``, checked by its requirement's URN and its audit: a server that
        ignored a filter would otherwise hand back another requirement's assessment, which would get linked."""
        urn = requirement_urn(control)
        for ra in self.iterate("/requirement-assessments/", {"compliance_assessment": compliance_assessment,
                                                             "requirement__urn": urn}):
            if _ref(ra.get("compliance_assessment")) == compliance_assessment and self._urn_of(ra) == urn:
                return ra
        return None

    def link_evidence(self, assessment: dict[str, Any], evidence_id: str) -> dict[str, Any]:
        """Add the evidence to a requirement assessment, keeping the ones already linked."""
        current = [_ref(e) for e in assessment.get("evidences") or []]
        if evidence_id in current:
            return assessment
        result: dict[str, Any] = self._json("PATCH", f"/requirement-assessments/{assessment['id']}/",
                                            json={"evidences": [*current, evidence_id]})
        return result

    def push_pack(self, *, archive: bytes, filename: str, name: str, folder: str, description: str,
                  observation: str, key: str | None = None, compliance_assessment: str | None = None,
                  controls: list[str] | None = None) -> PushResult:
        """Put the pack into a revision of the Evidence called ``name`` (created on first push).

        Idempotent per ``key`` (what the pack holds; default the archive's SHA-256), which each revision
        carries in its observation (the first, in the Evidence's description): pushing the same pack again
        makes no new revision, and a push that failed after its revision was created uploads into that
        revision on the retry instead of leaving it empty.
        """
        digest = hashlib.sha256(archive).hexdigest()
        marker = f"pack {key or digest}"
        note = f"{observation}; {marker}; sha256 {digest}"
        existing = self.find_evidence(name, folder)
        if existing is None:
            # the first revision comes with the Evidence and has no observation field: the note goes into
            # the description, later revisions carry it in their observation
            ev = self._json("POST", "/evidences/", json={"name": name, "description": f"{description}\n{note}",
                                                         "folder": folder})
        else:
            ev = existing
        evidence_id = str(ev["id"])
        revisions = [r for r in self.iterate("/evidence-revisions/", {"evidence": evidence_id})
                     if _ref(r.get("evidence")) == evidence_id]
        mine = [r for r in revisions if marker in str(r.get("observation") or "")
                or (int(r.get("version") or 0) == 1 and marker in str(ev.get("description") or ""))]
        done = next((r for r in mine if r.get("attachment_hash")), None)
        if done is not None:
            revision, uploaded = done, False
        else:
            rev = next((r for r in mine if not r.get("attachment")), None)
            if rev is None and existing is None and not revisions:
                # a server that lists no revisions: the file goes to the Evidence's own (first) revision
                self._upload(f"/evidences/{evidence_id}/upload/", filename, archive)
                rev = {"id": "", "version": 1}
            else:
                if rev is None:
                    rev = self._json("POST", "/evidence-revisions/", json={"evidence": evidence_id,
                                                                          "observation": note})
                self._upload(f"/evidence-revisions/{rev['id']}/upload/", filename, archive)
            revision = self._json("GET", f"/evidence-revisions/{rev['id']}/") if rev["id"] else rev
            uploaded = True
        server_hash = revision.get("attachment_hash")
        if uploaded and server_hash and server_hash != digest:
            raise PermanentSinkError(f"CISO Assistant stored a file with SHA-256 {server_hash}, not the pack's "
                                     f"{digest}")
        result = PushResult(evidence_id, str(revision.get("id", "")), int(revision.get("version") or 1),
                            existing is None, str(server_hash or digest), uploaded=uploaded)
        if compliance_assessment:
            for control in controls or []:
                ra = self.requirement_assessment(compliance_assessment, control)
                if ra is None:
                    result.unmatched.append(control)
                    continue
                self.link_evidence(ra, result.evidence_id)
                result.linked.append(str(ra["id"]))
        return result


def _ref(value: Any) -> str:
    """The id of a related object, whether the server answers with the id or with ``{"id": ..., "str": ...}``."""
    if isinstance(value, Mapping):
        return str(value.get("id", ""))
    return str(value) if value is not None else ""
