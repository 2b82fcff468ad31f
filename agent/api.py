"""HTTP API (FastAPI; OpenAPI at /docs): health, /metrics, systems, check runs, decisions, incidents with
human oversight (acknowledge, override with a reason), and evidence.

Tokens come from the config (values via ``${ENV}`` or ``${file:...}``) and carry scopes: ``read``,
``operate`` (trigger runs, acknowledge, override) and ``ingest``. Write endpoints always need a token;
reads need one as soon as any token is configured. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select, text

from agent import __version__
from agent.decisions import Transition, Verdict
from agent.evidence import Record, verify_ledger
from agent.exposition import StateCollector
from agent.incidents import utc
from agent.playbooks import CHECK_TO_KIND
from agent.runner import Agent
from agent.schema import CheckRun, Decision, EvidenceRecord, Incident, OutboxMessage
from config.errors import AimsError, LedgerIntegrityError

MAX_BODY = 1 << 20
Scope = Literal["read", "operate", "ingest"]


class OversightRequest(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="who decides (name or e-mail)")
    reason: str = Field(min_length=3, max_length=4000, description="why: recorded as evidence")


class OverrideRequest(OversightRequest):
    state: Literal["ok", "breach"] = Field(
        description="`ok`: the breach is accepted as a false alarm or handled, the incident resolves; "
        "`breach`: force an incident open although the metric is within limits")


def _auth(agent: Agent, scope: Scope) -> Callable[[Request], None]:
    tokens = [(t.value.get_secret_value().encode(), set(t.scopes), t.name) for t in agent.cfg.agent.tokens]

    def check(request: Request) -> None:
        if scope == "read" and not tokens:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        given = value.strip().encode()
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


def create_app(agent: Agent, *, scheduler_alive: Callable[[], bool] | None = None,
               lifespan: Any = None) -> FastAPI:
    app = FastAPI(title="aims-agent", version=__version__, lifespan=lifespan,
                  description="Model monitoring for ISO/IEC 42001 AI management systems.")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(agent.store, max_series_per_system=agent.cfg.agent.server.max_series_per_system))
    read = Depends(_auth(agent, "read"))
    operate = Depends(_auth(agent, "operate"))
    metrics_dep = [read] if agent.cfg.agent.server.metrics_require_token else []

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(AimsError)
    async def aims_error(_: Request, exc: AimsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=422)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz(response: Response) -> dict[str, Any]:
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
        return {"ready": ok, "checks": checks}

    @app.get("/metrics", tags=["metrics"], dependencies=metrics_dep)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/systems", tags=["systems"], dependencies=[read])
    def systems() -> list[dict[str, Any]]:
        return [inventory_entry(s) for s in agent.cfg.systems]

    @app.get("/api/v1/systems/{system_id}", tags=["systems"], dependencies=[read])
    def system(system_id: str) -> dict[str, Any]:
        cfg = _system(agent, system_id)
        return {**inventory_entry(cfg), "decisions": agent.decisions(system_id)}

    @app.post("/api/v1/systems/{system_id}/run", tags=["check runs"], dependencies=[operate])
    def run_now(system_id: str) -> dict[str, Any]:
        _system(agent, system_id)
        outcomes = agent.run_system(system_id)
        agent.deliver()
        return {"windows": [{"start": o.window_start, "end": o.window_end, "status": o.status, "rows": o.rows,
                             "error": o.error} for o in outcomes]}

    @app.get("/api/v1/check-runs", tags=["check runs"], dependencies=[read])
    def check_runs(system: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        with agent.store.session() as s:
            q = select(CheckRun).order_by(CheckRun.id.desc()).limit(limit)
            if system:
                q = q.where(CheckRun.system_id == system)
            return [_run_json(r, full=False) for r in s.execute(q).scalars()]

    @app.get("/api/v1/check-runs/{run_id}", tags=["check runs"], dependencies=[read])
    def check_run(run_id: int) -> dict[str, Any]:
        with agent.store.session() as s:
            r = s.get(CheckRun, run_id)
            if r is None:
                raise HTTPException(404, f"no check run {run_id}")
            return _run_json(r, full=True)

    @app.get("/api/v1/decisions", tags=["decisions"], dependencies=[read])
    def decisions(system: str | None = None) -> list[dict[str, Any]]:
        return agent.decisions(system)

    @app.get("/api/v1/incidents", tags=["incidents"], dependencies=[read])
    def incidents(status: Literal["open", "acknowledged", "resolved"] | None = None,
                  system: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        with agent.store.session() as s:
            q = select(Incident).order_by(Incident.id.desc()).limit(limit)
            if status:
                q = q.where(Incident.status == status)
            if system:
                q = q.where(Incident.system_id == system)
            return [_incident_json(i) for i in s.execute(q).scalars()]

    @app.get("/api/v1/incidents/{incident_id}", tags=["incidents"], dependencies=[read])
    def incident(incident_id: int) -> dict[str, Any]:
        with agent.store.session() as s:
            inc = s.get(Incident, incident_id)
            if inc is None:
                raise HTTPException(404, f"no incident {incident_id}")
            out = _incident_json(inc, full=True)
            out["notifications"] = [
                {"sink": m.sink, "action": m.action, "status": m.status, "attempts": m.attempts,
                 "last_error": m.last_error, "delivered_at": m.delivered_at}
                for m in s.execute(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)
                                   .order_by(OutboxMessage.id)).scalars()]
            return out

    @app.post("/api/v1/incidents/{incident_id}/acknowledge", tags=["incidents"], dependencies=[operate])
    def acknowledge(incident_id: int, body: OversightRequest, request: Request) -> dict[str, Any]:
        return oversee(agent, incident_id, "acknowledge", body, getattr(request.state, "token_name", "?"))

    @app.post("/api/v1/incidents/{incident_id}/override", tags=["incidents"], dependencies=[operate])
    def override(incident_id: int, body: OverrideRequest, request: Request) -> dict[str, Any]:
        return oversee(agent, incident_id, "override", body, getattr(request.state, "token_name", "?"),
                       state=body.state)

    @app.get("/api/v1/evidence", tags=["evidence"], dependencies=[read])
    def evidence(system: str | None = None, kind: str | None = None, after_seq: int = 0,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[dict[str, Any]]:
        with agent.store.session() as s:
            q = select(EvidenceRecord).where(EvidenceRecord.seq > after_seq).order_by(EvidenceRecord.seq).limit(limit)
            if system:
                q = q.where(EvidenceRecord.system_id == system)
            if kind:
                q = q.where(EvidenceRecord.kind == kind)
            return [Record.from_row(r).to_json() for r in s.execute(q).scalars()]

    @app.get("/api/v1/evidence/verify", tags=["evidence"], dependencies=[read])
    def evidence_verify(response: Response) -> dict[str, Any]:
        with agent.store.session() as s:
            try:
                n = verify_ledger(s)
            except LedgerIntegrityError as exc:
                response.status_code = 409
                return {"intact": False, "first_bad_seq": exc.seq, "reason": str(exc)}
        return {"intact": True, "records": n}

    return app


def _system(agent: Agent, system_id: str) -> Any:
    try:
        return agent.cfg.system(system_id)
    except KeyError:
        raise HTTPException(404, f"no system {system_id!r}") from None


def inventory_entry(s: Any) -> dict[str, Any]:
    return {
        "id": s.id, "name": s.name, "purpose": s.purpose, "decisions": s.decisions,
        "data_consumed": s.data_consumed, "owner": s.owner.model_dump(), "role": s.role.value,
        "risk_tier": s.risk_tier.value, "eu_ai_act_high_risk": s.eu_ai_act_high_risk,
        "impact_assessment_ref": s.impact_assessment_ref, "model": s.model.model_dump(),
        "lifecycle_stage": s.lifecycle_stage.value, "risk_register_ids": s.risk_register_ids,
    }


def _run_json(r: CheckRun, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id, "system": r.system_id, "window_start": utc(r.window_start),
                           "window_end": utc(r.window_end), "status": r.status, "rows": r.rows,
                           "error": r.error, "evidence_seq": r.evidence_seq}
    if full:
        out["results"] = r.results
    return out


def _incident_json(i: Incident, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": i.id, "fingerprint": i.fingerprint, "system": i.system_id, "kind": i.kind,
                           "subject": i.subject, "status": i.status, "severity": i.severity, "title": i.title,
                           "opened_at": utc(i.opened_at), "updated_at": utc(i.updated_at),
                           "resolved_at": utc(i.resolved_at) if i.resolved_at else None}
    if full:
        out["content"] = i.content
    return out


def oversee(agent: Agent, incident_id: int, action: str, body: OversightRequest, token: str,
            *, state: str | None = None) -> dict[str, Any]:
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
                row.state, row.breach_streak, row.ok_streak = "ok", 0, 0
            v = Verdict(check, inc.subject, "ok", summary=f"overridden by {body.by}: {body.reason}")
            agent.incidents.apply(s, system=system, verdict=v, transition=Transition("breach", "ok"),
                                  window=None, now=now)
        elif state == "breach":
            check = _check_of(inc.kind)
            v = Verdict(check, inc.subject, "breach", summary=f"forced open by {body.by}: {body.reason}")
            agent.incidents.apply(s, system=system, verdict=v, transition=Transition("ok", "breach"),
                                  window=None, now=now)
    agent.deliver()
    return {"incident_id": incident_id, "action": action, "evidence_seq": record.seq}


def _check_of(kind: str) -> str:
    return next((c for c, k in CHECK_TO_KIND.items() if k == kind), kind)
