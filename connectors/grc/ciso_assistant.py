"""CISO Assistant client: puts an evidence pack into an Evidence (one revision per reporting period) and
links it to the requirement assessments of an ISO 42001 audit, by Annex A URN.

The REST contract (CISO Assistant community, ``backend/core``): ``Authorization: Token <PAT>``;
lists paginate with ``limit``/``offset`` and answer ``{count, next, previous, results}``; a file is
uploaded as the raw request body with ``Content-Disposition: attachment; filename="..."``, and uploading
to an existing revision *replaces* its file, so each push makes a new revision instead and puts our own
SHA-256 in its ``observation`` to cross-check the server's ``attachment_hash``; M2M lists
(``evidences`` of a requirement assessment) are *replaced* on PATCH, so the full list is sent.

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
    sha256: str
    linked: list[str] = field(default_factory=list)  # requirement assessment ids
    unmatched: list[str] = field(default_factory=list)  # controls with no requirement assessment in the audit


class CisoAssistant:
    def __init__(self, base_url: str, token: str, *, allowed_hosts: list[str] | None = None,
                 timeout_s: float = 30.0) -> None:
        self.http = HttpClient(base_url=base_url.rstrip("/") + "/api",
                               settings=SinkSettings(allowed_hosts=allowed_hosts or [], timeout_s=timeout_s),
                               headers={"Authorization": f"Token {token}", "Accept": "application/json"},
                               secrets=[token], label="ciso-assistant")

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

    def requirement_assessment(self, compliance_assessment: str, control: str) -> dict[str, Any] | None:
        urn = requirement_urn(control)
        return next(iter(self.iterate("/requirement-assessments/", {
            "compliance_assessment": compliance_assessment, "requirement__urn": urn})), None)

    def link_evidence(self, assessment: dict[str, Any], evidence_id: str) -> dict[str, Any]:
        """Add the evidence to a requirement assessment, keeping the ones already linked."""
        current = [e["id"] if isinstance(e, dict) else str(e) for e in assessment.get("evidences") or []]
        if evidence_id in current:
            return assessment
        result: dict[str, Any] = self._json("PATCH", f"/requirement-assessments/{assessment['id']}/",
                                            json={"evidences": [*current, evidence_id]})
        return result

    def push_pack(self, *, archive: bytes, filename: str, name: str, folder: str, description: str,
                  observation: str, compliance_assessment: str | None = None,
                  controls: list[str] | None = None) -> PushResult:
        """Upload the pack as a new revision of the Evidence called ``name`` (created on first push)."""
        digest = hashlib.sha256(archive).hexdigest()
        note = f"{observation}; sha256 {digest}"
        existing = self.find_evidence(name, folder)
        if existing is None:
            # the first revision comes with the Evidence and has no observation field: the note goes into
            # the description, later revisions carry it in their observation
            ev = self._json("POST", "/evidences/", json={"name": name, "description": f"{description}\n{note}",
                                                         "folder": folder})
            revisions = list(self.iterate("/evidence-revisions/", {"evidence": ev["id"]}))
            latest = max(revisions, key=lambda r: int(r.get("version", 0))) if revisions else None
            self._upload(f"/evidences/{ev['id']}/upload/", filename, archive)
            revision: dict[str, Any] = (self._json("GET", f"/evidence-revisions/{latest['id']}/") if latest
                                        else {"id": "", "version": 1})
            created = True
        else:
            ev = existing
            rev = self._json("POST", "/evidence-revisions/", json={"evidence": ev["id"], "observation": note})
            self._upload(f"/evidence-revisions/{rev['id']}/upload/", filename, archive)
            revision = self._json("GET", f"/evidence-revisions/{rev['id']}/")
            created = False
        server_hash = revision.get("attachment_hash")
        if server_hash and server_hash != digest:
            raise PermanentSinkError(f"CISO Assistant stored a file with SHA-256 {server_hash}, not the pack's "
                                     f"{digest}")
        result = PushResult(str(ev["id"]), str(revision.get("id", "")), int(revision.get("version", 1)), created,
                            digest)
        if compliance_assessment:
            for control in controls or []:
                ra = self.requirement_assessment(compliance_assessment, control)
                if ra is None:
                    result.unmatched.append(control)
                    continue
                self.link_evidence(ra, result.evidence_id)
                result.linked.append(str(ra["id"]))
        return result
