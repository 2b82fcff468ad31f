"""HTTP API (FastAPI; OpenAPI at /docs): health, /metrics, systems, check runs, decisions, incidents with
human oversight (acknowledge, override with a reason), the delivery outbox (list, requeue or discard a
dead notification), evidence (query, one record, a report, export as a pack, verify) and the CloudEvents
ingest.

Tokens come from the config (values via ``${ENV}`` or ``${file:...}``) and carry scopes: ``read``,
``operate`` (trigger runs, acknowledge, override, requeue or discard a notification) and ``ingest``.
Every route except ``/healthz``, ``/readyz``, the API documentation and (unless
``server.metrics_require_token``) ``/metrics`` checks its scope: write routes always need a token; reads
need one as soon as any token is configured (and the agent refuses to serve a non-loopback address with
no token unless ``server.allow_unauthenticated_reads``). The one exception is opt-in: the ingest routes
accept a request without a token from a client address in ``server.ingest_without_token_from`` (for
inference loggers that cannot send one); every other route still needs its token from there. Tokens
have at least 16 characters and are compared in constant time. Request bodies over ``MAX_BODY`` bytes
are refused with 413, announced or streamed; a Content-Length that is not a number gets 400.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent import __version__
from agent.decisions import Transition, Verdict
from agent.evidence import Record, check_ledger, iso
from agent.evidence_pack import ZIP_FOLDER, compare_with_ledger, export_pack, unzip_pack, verify_pack_report, zip_pack
from agent.incidents import OutboxEntry, utc
from agent.ingest import create_router as create_ingest_router
from agent.playbooks import CHECK_TO_KIND
from agent.runner import Agent
from agent.schema import CheckRun, Decision, EvidenceRecord, Incident, OutboxMessage
from agent.service import Service
from config.errors import AimsError, EvidenceError, InputError, LedgerIntegrityError
from config.model import LifecycleStage, ModelRef, Owner, RiskTier, Role, SystemConfig

# ids live in 64-bit integer columns; a larger number is a 422, not a database overflow
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID)]
MAX_BODY = 1 << 20
MAX_PACK_UPLOAD = 64 << 20  # a zipped pack; about 300,000 records
VERIFY_PACK_PATH = "/api/v1/evidence/verify-pack"
RUN_NOW_WAIT_S = 30.0  # "run now" waits this long for a check in progress to finish
TokenScope = Literal["read", "operate", "ingest"]
IncidentStatus = Literal["open", "acknowledged", "resolved"]


# -- request and response models ------------------------------------------------------------------
class ErrorBody(BaseModel):
    detail: str = Field(description="what is wrong, in one sentence")
    error: str | None = Field(default=None, description="the aims-agent error class, when one was raised")


class OversightRequest(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="who decides (name or e-mail)")
    reason: str = Field(min_length=3, max_length=4000, description="why: recorded as evidence")


class OverrideRequest(OversightRequest):
    state: Literal["ok", "breach"] = Field(
        description="`ok`: the breach is accepted as a false alarm or handled, the incident resolves; "
        "`breach`: force an incident open although the metric is within limits")


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="state_store, scheduler: each true when usable")


class SystemOut(BaseModel):
    """An AI system inventory entry (the AIMS register's fields)."""

    id: str
    name: str
    purpose: str
    decisions: list[str] = Field(description="decisions the system influences")
    data_consumed: list[str]
    owner: Owner
    role: Role
    risk_tier: RiskTier
    eu_ai_act_high_risk: bool
    impact_assessment_ref: str | None
    model: ModelRef
    lifecycle_stage: LifecycleStage
    risk_register_ids: list[str]


class DecisionOut(BaseModel):
    system: str
    check: str
    subject: str
    state: Literal["ok", "warning", "breach", "insufficient_data"]
    value: float | None
    summary: str | None
    updated_at: datetime


class SystemDetail(SystemOut):
    current_decisions: list[DecisionOut] = Field(description="the state of every (check, subject) of the system")


class CheckRunOut(BaseModel):
    id: int
    system: str
    phase: str = Field(description="all | predictions | labels (label checks run once ground truth arrived)")
    window_start: datetime
    window_end: datetime
    status: str = Field(description="ok | warning | breach | insufficient_data | failed")
    rows: int
    error: str | None
    evidence_seq: int | None = Field(description="the evidence record of this run")


class CheckRunDetail(CheckRunOut):
    results: dict[str, Any] = Field(description="metric results of the window (drift, quality, performance, fairness)")


class WindowOutcome(BaseModel):
    start: datetime
    end: datetime
    status: str = Field(description="ok | warning | breach | insufficient_data | failed | skipped")
    rows: int
    error: str | None


class RunNow(BaseModel):
    windows: list[WindowOutcome] = Field(description="the windows judged by this request (empty: none was due)")


class IncidentOut(BaseModel):
    id: int
    fingerprint: str = Field(description="stable per (system, kind, subject): one open ticket per fingerprint")
    system: str
    kind: str
    subject: str
    status: IncidentStatus
    severity: str
    title: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class NotificationOut(BaseModel):
    sink: str
    action: str
    status: str = Field(description="pending | delivered | dead")
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class OutboxOut(BaseModel):
    """One notification in the delivery outbox."""

    id: int
    sink: str
    incident_id: int
    fingerprint: str
    action: str = Field(description="open | update | resolve")
    status: str = Field(description="pending | delivered | dead | discarded")
    attempts: int
    error_kind: str | None = Field(description="why the last attempt failed: retryable | unexpected | permanent")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    failing_since: datetime | None = Field(description="first failure; the retry budget counts from here")
    dead_at: datetime | None
    delivered_at: datetime | None
    held: bool = Field(description="pending behind a dead message of the same ticket: requeue or discard that one")


class IncidentDetail(IncidentOut):
    content: dict[str, Any] = Field(description="the triage playbook content of the incident")
    notifications: list[NotificationOut]


class OversightOut(BaseModel):
    incident_id: int
    action: Literal["acknowledge", "override"]
    status: IncidentStatus = Field(description="the incident's status after the decision")
    evidence_seq: int = Field(description="the evidence record of the human decision")


class EvidenceOut(BaseModel):
    seq: int
    ts: str
    kind: str
    system: str | None
    controls: list[str]
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class Verification(BaseModel):
    intact: bool
    records: int | None = Field(default=None, description="records verified (when intact)")
    first_bad_seq: int | None = Field(default=None, description="the first record altered, removed or reordered")
    reason: str | None = None
    signature: str | None = Field(default=None, description="what was established about the signature (signed "
                                  "head or pack manifest), checked with the configured key when there is one")
    ledger: str | None = Field(default=None, description="for an uploaded pack: whether it is a piece of this "
                               "agent's ledger")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


# -- authentication and request limits --------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="a token from `agent.tokens` with the route's scope")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: Request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The TCP peer's address as the ASGI server reports it (``request.client``; the agent serves with
    uvicorn's proxy headers off, so never X-Forwarded-For); IPv4-mapped IPv6 as IPv4; None when unknown."""
    if request.client is None:
        return None
    try:
        addr = ipaddress.ip_address(request.client.host)
    except ValueError:
        return None  # a Unix socket, a test client's made-up name
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _auth(agent: Agent, scope: TokenScope, *, always: bool = False,
          without_token_from: Sequence[str] = ()) -> Callable[..., None]:
    """A dependency checking the bearer token's scope; ``always``: even a read needs a token (an upload).

    ``without_token_from`` (the ingest's ``agent.server.ingest_without_token_from``): a request that
    presents no token is let through when its client address is in one of these networks. A token that
    is presented is always checked, wherever it comes from.
    """
    tokens = [(t.value.get_secret_value().encode(), set(t.scopes), t.name) for t in agent.cfg.agent.tokens]
    networks: list[Network] = [ipaddress.ip_network(n) for n in without_token_from]

    def check(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if scope == "read" and not tokens and not always:
            return
        if creds is None or not creds.credentials:
            addr = client_address(request) if networks else None
            allowed = next((n for n in networks if addr is not None and addr in n), None)
            if allowed is not None:
                request.state.token_name = f"(no token, from {allowed})"
                return
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        given = creds.credentials.strip().encode()
        match = None
        for secret, scopes, name in tokens:
            if hmac.compare_digest(secret, given):  # every token compared, no early exit on a match
                match = (scopes, name)
        if match is None:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        if scope not in match[0]:
            raise HTTPException(403, f"token {match[1]!r} lacks the {scope!r} scope")
        request.state.token_name = match[1]

    return check


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: by Content-Length up front, or while a chunked body streams in.

    ``prefix_limits`` gives paths under a prefix their own limit (the CloudEvents ingest takes
    ``agent.server.max_event_bytes``).
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, prefix_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.prefix_limits = dict(prefix_limits or {})

    def _limit(self, path: str) -> int:
        return next((n for prefix, n in self.prefix_limits.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(str(scope.get("path", "")))
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.strip().isdigit():
            await self._refuse(send, limit, 400, "Content-Length is not a number of bytes")
            return
        if length is not None and int(length) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # an HTTPException passes FastAPI's body parsing untouched and becomes the 413 response
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int, status: int = 413, detail: str | None = None) -> None:
        body = json.dumps({"detail": detail or f"request body over {limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# -- the application ------------------------------------------------------------------------------
def create_app(agent: Agent, *, scheduler_alive: Callable[[], bool] | None = None,
               lifespan: Any = None, service: Service | None = None) -> FastAPI:
    app = FastAPI(title="aims-agent", version=__version__, lifespan=lifespan,
                  description="Model monitoring for ISO/IEC 42001 AI management systems: the AI system "
                  "inventory, check runs, incidents with human oversight, and audit evidence.")
    app.add_middleware(BodyLimit, limit=MAX_BODY,
                       prefix_limits={"/api/v1/ingest/": agent.cfg.agent.server.max_event_bytes,
                                      VERIFY_PACK_PATH: MAX_PACK_UPLOAD})
    # without a scheduler (demo, tests) "run now" still goes through the per-system locks
    svc = service if service is not None else Service(agent, run_on_start=False)
    read = Depends(_auth(agent, "read"))
    read_with_token = Depends(_auth(agent, "read", always=True))
    operate = Depends(_auth(agent, "operate"))
    metrics_dep = [read] if agent.cfg.agent.server.metrics_require_token else []
    auth_errors = _errors(401, 403)

    @app.exception_handler(AimsError)
    async def aims_error(_: Request, exc: AimsError) -> JSONResponse:
        status = 422 if isinstance(exc, InputError) else 500
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", version=__version__)

    @app.get("/readyz", tags=["health"], responses={503: {"model": Readiness}})
    def readyz(response: Response) -> Readiness:
        """Readiness: the state store answers and the scheduler runs."""
        checks: dict[str, bool] = {}
        try:
            with agent.store.session() as s:
                s.execute(text("SELECT 1"))
            checks["state_store"] = True
        except AimsError:
            checks["state_store"] = False
        if scheduler_alive is not None:
            checks["scheduler"] = scheduler_alive()
        ok = all(checks.values())
        response.status_code = 200 if ok else 503
        return Readiness(ready=ok, checks=checks)

    @app.get("/metrics", tags=["metrics"], dependencies=metrics_dep, response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        """Prometheus exposition, built from the state store (rebuilt whenever the state has changed)."""
        return Response(svc.exposition.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/systems", tags=["systems"], dependencies=[read], responses=auth_errors)
    def systems() -> list[SystemOut]:
        """The AI system inventory."""
        return [SystemOut(**inventory_entry(s)) for s in agent.cfg.systems]

    @app.get("/api/v1/systems/{system_id}", tags=["systems"], dependencies=[read], responses=_errors(401, 403, 404))
    def system(system_id: str) -> SystemDetail:
        """One inventory entry with the current decision of each of its checks."""
        cfg = _system(agent, system_id)
        return SystemDetail(**inventory_entry(cfg),
                            current_decisions=[DecisionOut(**d) for d in agent.decisions(system_id)])

    @app.post("/api/v1/systems/{system_id}/run", tags=["check runs"], dependencies=[operate],
              responses=_errors(401, 403, 404, 409))
    def run_now(system_id: str) -> RunNow:
        """Judge the system's due windows now. A check of the system in progress, on this replica or
        another, is waited for up to 30 s (then 409); after it, only what is still due is judged."""
        _system(agent, system_id)
        outcomes = svc.run_system(system_id, wait=RUN_NOW_WAIT_S)
        if outcomes is None:
            raise HTTPException(409, f"system {system_id!r} is still being checked after {RUN_NOW_WAIT_S:g} s "
                                "(by this or another replica); try again")
        agent.deliver()
        return RunNow(windows=[WindowOutcome(start=o.window_start, end=o.window_end, status=o.status, rows=o.rows,
                                             error=o.error) for o in outcomes])

    @app.get("/api/v1/check-runs", tags=["check runs"], dependencies=[read], responses=auth_errors)
    def check_runs(system: str | None = None, status: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CheckRunOut]:
        """Check runs, newest first."""
        with agent.store.session() as s:
            q = select(CheckRun).order_by(CheckRun.id.desc()).limit(limit)
            if system:
                q = q.where(CheckRun.system_id == system)
            if status:
                q = q.where(CheckRun.status == status)
            return [CheckRunOut(**_run_json(r)) for r in s.execute(q).scalars()]

    @app.get("/api/v1/check-runs/{run_id}", tags=["check runs"], dependencies=[read], responses=_errors(401, 403, 404))
    def check_run(run_id: RowId) -> CheckRunDetail:
        """One check run with its metric results."""
        with agent.store.session() as s:
            r = s.get(CheckRun, run_id)
            if r is None:
                raise HTTPException(404, f"no check run {run_id}")
            return CheckRunDetail(**_run_json(r), results=dict(r.results or {}))

    @app.get("/api/v1/decisions", tags=["decisions"], dependencies=[read], responses=auth_errors)
    def decisions(system: str | None = None) -> list[DecisionOut]:
        """The current state of every (system, check, subject)."""
        return [DecisionOut(**d) for d in agent.decisions(system)]

    @app.get("/api/v1/incidents", tags=["incidents"], dependencies=[read], responses=auth_errors)
    def incidents(status: IncidentStatus | None = None, system: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[IncidentOut]:
        """Incidents, newest first."""
        with agent.store.session() as s:
            q = select(Incident).order_by(Incident.id.desc()).limit(limit)
            if status:
                q = q.where(Incident.status == status)
            if system:
                q = q.where(Incident.system_id == system)
            return [IncidentOut(**_incident_json(i)) for i in s.execute(q).scalars()]

    @app.get("/api/v1/incidents/{incident_id}", tags=["incidents"], dependencies=[read],
             responses=_errors(401, 403, 404))
    def incident(incident_id: RowId) -> IncidentDetail:
        """One incident with its playbook content and the state of its notifications."""
        with agent.store.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None:
                raise HTTPException(404, f"no incident {incident_id}")
            notes = [NotificationOut(sink=m.sink, action=m.action, status=m.status, attempts=m.attempts,
                                     last_error=m.last_error,
                                     delivered_at=utc(m.delivered_at) if m.delivered_at else None)
                     for m in s.execute(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)
                                        .order_by(OutboxMessage.id)).scalars()]
            return IncidentDetail(**_incident_json(inc), content=dict(inc.content or {}), notifications=notes)

    @app.post("/api/v1/incidents/{incident_id}/acknowledge", tags=["incidents"], dependencies=[operate],
              responses=_errors(401, 403, 404, 409))
    def acknowledge(incident_id: RowId, body: OversightRequest, request: Request) -> OversightOut:
        """A person takes the incident on (recorded as human-oversight evidence)."""
        return oversee(agent, incident_id, "acknowledge", body, getattr(request.state, "token_name", "?"))

    @app.post("/api/v1/incidents/{incident_id}/override", tags=["incidents"], dependencies=[operate],
              responses=_errors(401, 403, 404))
    def override(incident_id: RowId, body: OverrideRequest, request: Request) -> OversightOut:
        """A person overrides the decision behind the incident, with a reason (recorded as evidence)."""
        return oversee(agent, incident_id, "override", body, getattr(request.state, "token_name", "?"),
                       state=body.state)

    @app.get("/api/v1/outbox", tags=["outbox"], dependencies=[read], responses=auth_errors)
    def outbox(status: Literal["pending", "delivered", "dead", "discarded"] | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[OutboxOut]:
        """Notifications, newest first; `status=dead` lists the ones given up on."""
        return [_outbox_out(e) for e in agent.outbox.entries(status=status, limit=limit)]

    def operate_outbox(message_id: int, body: OversightRequest, request: Request,
                       what: Literal["requeue", "discard"]) -> OutboxOut:
        by = f"{body.by} (token {getattr(request.state, 'token_name', '?')})"
        try:
            entry = (agent.outbox.requeue(message_id, by=by, reason=body.reason) if what == "requeue"
                     else agent.outbox.discard(message_id, by=by, reason=body.reason))
        except InputError as exc:
            raise HTTPException(409, str(exc)) from exc
        if entry is None:
            raise HTTPException(404, f"no outbox message {message_id}")
        agent.deliver()
        return _outbox_out(entry)

    @app.post("/api/v1/outbox/{message_id}/requeue", tags=["outbox"], dependencies=[operate],
              responses=_errors(401, 403, 404, 409))
    def outbox_requeue(message_id: RowId, body: OversightRequest, request: Request) -> OutboxOut:
        """Give a dead notification a fresh retry budget, due now (recorded as evidence); the later
        notifications of its ticket follow it in order."""
        return operate_outbox(message_id, body, request, "requeue")

    @app.post("/api/v1/outbox/{message_id}/discard", tags=["outbox"], dependencies=[operate],
              responses=_errors(401, 403, 404, 409))
    def outbox_discard(message_id: RowId, body: OversightRequest, request: Request) -> OutboxOut:
        """Abandon a dead notification for good (recorded as evidence), releasing the later
        notifications of its ticket."""
        return operate_outbox(message_id, body, request, "discard")

    @app.get("/api/v1/evidence", tags=["evidence"], dependencies=[read], responses=auth_errors)
    def evidence(system: str | None = None, kind: str | None = None,
                 since: Annotated[datetime | None, Query(description="records at or after (ISO 8601)")] = None,
                 until: Annotated[datetime | None, Query(description="records before (ISO 8601)")] = None,
                 after_seq: Annotated[int, Query(ge=0, le=MAX_ROW_ID,
                                                 description="page on: the last seq you have")] = 0,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[EvidenceOut]:
        """Evidence records in ledger order."""
        with agent.store.session() as s:
            q = select(EvidenceRecord).where(EvidenceRecord.seq > after_seq).order_by(EvidenceRecord.seq).limit(limit)
            if system:
                q = q.where(EvidenceRecord.system_id == system)
            if kind:
                q = q.where(EvidenceRecord.kind == kind)
            # ts is canonical ISO 8601 UTC with a fixed width, so string order is time order
            if since:
                q = q.where(EvidenceRecord.ts >= iso(_aware(since)))
            if until:
                q = q.where(EvidenceRecord.ts < iso(_aware(until)))
            return [EvidenceOut(**Record.from_row(r).to_json()) for r in s.execute(q).scalars()]

    @app.get("/api/v1/evidence/export", tags=["evidence"], dependencies=[read], response_class=FileResponse,
             responses={200: {"content": {"application/zip": {}},
                              "description": "the evidence pack (records.jsonl, controls.csv, report.html, "
                                             "manifest.json), signed when a signing key is configured"},
                        **_errors(401, 403, 422)})
    def evidence_export(system: str | None = None,
                        since: Annotated[datetime | None, Query(description="from (ISO 8601)")] = None,
                        until: Annotated[datetime | None, Query(description="until, exclusive (ISO 8601)")] = None,
                        ) -> FileResponse:
        """Export a period as an evidence pack (a zip; verify it offline with `aims-agent evidence verify`),
        with the organisation's control mapping and, when configured, signed with the ledger's key."""
        tmp = Path(tempfile.mkdtemp(prefix="aims-pack-"))
        try:
            pack = tmp / ZIP_FOLDER
            export_pack(agent.store, pack, since=_aware(since).isoformat() if since else None,
                        until=_aware(until).isoformat() if until else None, system=system,
                        signer=agent.ledger.signer, control_map=agent.ledger.control_map)
            archive = tmp / "evidence-pack.zip"
            zip_pack(pack, archive)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return FileResponse(archive, media_type="application/zip", filename=f"aims-evidence-{stamp}.zip",
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))

    @app.get("/api/v1/evidence/verify", tags=["evidence"], dependencies=[read],
             responses={409: {"model": Verification}, **auth_errors})
    def evidence_verify(response: Response) -> Verification:
        """Verify the whole ledger's hash chain and, with a signing key configured, its signed head (409 names
        the first record that does not fit)."""
        with agent.store.session() as s:
            try:
                result = check_ledger(s, verifier=agent.ledger.signer)
            except LedgerIntegrityError as exc:
                response.status_code = 409
                return Verification(intact=False, first_bad_seq=exc.seq, reason=str(exc))
        return Verification(intact=True, records=result.records, signature=result.signature)

    @app.post(VERIFY_PACK_PATH, tags=["evidence"], dependencies=[read_with_token],
              openapi_extra={"requestBody": {"required": True, "description": "a zipped evidence pack, as "
                                             "exported (files at the top or in one folder); sent as "
                                             "application/zip or application/octet-stream",
                                             "content": {"application/octet-stream": {
                                                 "schema": {"type": "string", "format": "binary"}}}}},
              responses={409: {"model": Verification}, **_errors(401, 403, 413, 422)})
    async def evidence_verify_pack(request: Request, response: Response) -> Verification:
        """Verify an uploaded pack (a zip of at most 64 MiB): its files, its chain, its signature with the
        configured key, and that it is a piece of this agent's ledger. 409 names the first bad record; a body
        that is not a pack is a 422."""
        tmp = Path(tempfile.mkdtemp(prefix="aims-upload-"))
        try:
            archive = tmp / "upload.zip"
            with archive.open("wb") as fh:
                async for chunk in request.stream():  # the body limit middleware bounds the total
                    fh.write(chunk)
            return await run_in_threadpool(_verify_upload, agent, archive, tmp, response)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @app.get("/api/v1/evidence/report", tags=["evidence"], dependencies=[read], response_class=HTMLResponse,
             responses={200: {"content": {"text/html": {}}, "description": "the report of the period"},
                        **_errors(401, 403, 422)})
    def evidence_report(system: str | None = None,
                        since: Annotated[datetime | None, Query(description="from (ISO 8601)")] = None,
                        until: Annotated[datetime | None, Query(description="until, exclusive (ISO 8601)")] = None,
                        ) -> HTMLResponse:
        """The evidence pack's report of a period as one HTML page: drift, fairness and performance
        over time, each incident's timeline, and the controls evidenced. Tickets link it."""
        if system is not None:
            _system(agent, system)
        with tempfile.TemporaryDirectory(prefix="aims-report-") as tmp:
            pack = Path(tmp) / "evidence-pack"
            export_pack(agent.store, pack, since=_aware(since).isoformat() if since else None,
                        until=_aware(until).isoformat() if until else None, system=system,
                        control_map=agent.ledger.control_map)
            return HTMLResponse((pack / "report.html").read_text(encoding="utf-8"))

    @app.get("/api/v1/evidence/{seq}", tags=["evidence"], dependencies=[read], responses=_errors(401, 403, 404))
    def evidence_record(seq: RowId) -> EvidenceOut:
        """One evidence record (the record a ticket links)."""
        with agent.store.session() as s:
            r = s.get(EvidenceRecord, seq)
            if r is None:
                raise HTTPException(404, f"no evidence record {seq}")
            return EvidenceOut(**Record.from_row(r).to_json())

    app.include_router(create_ingest_router(agent))
    return app


def _verify_upload(agent: Agent, archive: Path, tmp: Path, response: Response) -> Verification:
    folder = tmp / ZIP_FOLDER
    folder.mkdir()
    try:
        unzip_pack(archive, folder, max_bytes=16 * MAX_PACK_UPLOAD)
        n, signature = verify_pack_report(folder, verifier=agent.ledger.signer)
        with agent.store.session() as s:
            ledger = compare_with_ledger(s, folder)
    except LedgerIntegrityError as exc:
        response.status_code = 409
        return Verification(intact=False, first_bad_seq=exc.seq, reason=str(exc))
    except EvidenceError as exc:  # no usable manifest: nothing to verify, which is not tampering
        raise InputError(str(exc).replace(str(folder), "the pack")) from exc
    return Verification(intact=True, records=n, signature=signature, ledger=ledger)


def _outbox_out(e: OutboxEntry) -> OutboxOut:
    return OutboxOut(**{f: getattr(e, f) for f in OutboxOut.model_fields})


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _system(agent: Agent, system_id: str) -> SystemConfig:
    try:
        return agent.cfg.system(system_id)
    except KeyError:
        raise HTTPException(404, f"no system {system_id!r}") from None


def inventory_entry(s: SystemConfig) -> dict[str, Any]:
    return {
        "id": s.id, "name": s.name, "purpose": s.purpose, "decisions": s.decisions,
        "data_consumed": s.data_consumed, "owner": s.owner.model_dump(), "role": s.role.value,
        "risk_tier": s.risk_tier.value, "eu_ai_act_high_risk": s.eu_ai_act_high_risk,
        "impact_assessment_ref": s.impact_assessment_ref, "model": s.model.model_dump(),
        "lifecycle_stage": s.lifecycle_stage.value, "risk_register_ids": s.risk_register_ids,
    }


def _run_json(r: CheckRun) -> dict[str, Any]:
    return {"id": r.id, "system": r.system_id, "phase": r.phase, "window_start": utc(r.window_start),
            "window_end": utc(r.window_end), "status": r.status, "rows": r.rows, "error": r.error,
            "evidence_seq": r.evidence_seq}


def _incident_json(i: Incident) -> dict[str, Any]:
    return {"id": i.id, "fingerprint": i.fingerprint, "system": i.system_id, "kind": i.kind,
            "subject": i.subject, "status": i.status, "severity": i.severity, "title": i.title,
            "opened_at": utc(i.opened_at), "updated_at": utc(i.updated_at),
            "resolved_at": utc(i.resolved_at) if i.resolved_at else None}


def oversee(agent: Agent, incident_id: int, action: Literal["acknowledge", "override"], body: OversightRequest,
            token: str, *, state: str | None = None) -> OversightOut:
    """Record a human decision on an incident (EU AI Act Art. 14; ISO 42001 A.9.2) and act on it."""
    now = datetime.now(UTC)
    with agent.store.transaction() as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            raise HTTPException(404, f"no incident {incident_id}")
        system = _system(agent, inc.system_id)
        if inc.status == "resolved" and action == "acknowledge":
            raise HTTPException(409, f"incident {incident_id} is already resolved")
        record = agent.ledger.append(s, "human_override", {
            "incident_id": inc.id, "fingerprint": inc.fingerprint, "action": action, "state": state,
            "by": body.by, "reason": body.reason, "token": token, "status_before": inc.status,
        }, system_id=inc.system_id, now=now)
        if action == "acknowledge":
            inc.status = "acknowledged"
            inc.updated_at = now
            agent.incidents._enqueue(s, system, inc, "update", f"Acknowledged by {body.by}: {body.reason}", now)
        elif state == "ok" and inc.status != "resolved":
            check = _check_of(inc.kind)
            row = s.get(Decision, (inc.system_id, check, inc.subject))
            if row is not None:
                # accepted by a person: no new incident for this subject until the metric has recovered once
                row.detail = {**(row.detail or {}), "suppressed": True, "override_by": body.by}
            v = Verdict(check, inc.subject, "ok", summary=f"overridden by {body.by}: {body.reason}")
            agent.incidents.apply(s, system=system, verdict=v, transition=Transition("breach", "ok"),
                                  window=None, now=now)
        elif state == "breach":
            check = _check_of(inc.kind)
            v = Verdict(check, inc.subject, "breach", summary=f"forced open by {body.by}: {body.reason}")
            agent.incidents.apply(s, system=system, verdict=v, transition=Transition("ok", "breach"),
                                  window=None, now=now)
        s.flush()
        status = inc.status
    agent.deliver()
    return OversightOut.model_validate({"incident_id": incident_id, "action": action, "status": status,
                                        "evidence_seq": record.seq})


def _check_of(kind: str) -> str:
    return next((c for c, k in CHECK_TO_KIND.items() if k == kind), kind)
