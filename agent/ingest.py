"""Receive KServe and Seldon inference-logger CloudEvents and store them durably before answering.

``POST /api/v1/ingest/cloudevents`` and ``POST /api/v1/ingest/{system_id}/cloudevents`` take one
CloudEvent in HTTP binary mode (attributes in ``ce-*`` headers, the raw inference payload as the
body) as KServe's agent and Seldon's executor send them; structured mode
(``application/cloudevents+json``) is accepted too. Both need a token with the ``ingest`` scope, except
from the networks listed in ``agent.server.ingest_without_token_from`` (opt-in, default none): there a
request without a token is accepted (KServe's logger cannot send an Authorization header).

Each event is checked (required attributes, a known type, a payload that parses as v1, v2 or Seldon)
and committed to ``inference_events`` BEFORE the 2xx answer, so an acknowledged event survives a
crash. KServe delivers at most once and Seldon may redeliver: a duplicate (same system, ``ce-id`` and
half) answers 200 with ``"duplicate": true`` and stores nothing; a lone request or response is kept
and simply never joined. A malformed event gets 400 with the reason (an attribute longer than the
column it is stored in included: a retrying sender must not take it for an outage), a body over
``agent.server.max_event_bytes`` (default ``MAX_EVENT_BYTES``, 1 MiB) 413, and one that cannot be
stored 503 (never a 2xx).
The ``cloudevents`` source (``connectors/sources/cloudevents.py``) reads the joined rows back.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError

from agent.schema import InferenceEvent
from config.errors import InputError, StateStoreError
from connectors.sources.inference import parse_feedback, parse_request, parse_response

if TYPE_CHECKING:
    from agent.runner import Agent

log = logging.getLogger("aims.ingest")
MAX_EVENT_BYTES = 1 << 20  # default of agent.server.max_event_bytes: a larger payload is refused (413), never truncated

KINDS = {
    "org.kubeflow.serving.inference.request": "request",
    "org.kubeflow.serving.inference.response": "response",
    "io.seldon.serving.inference.request": "request",
    "io.seldon.serving.inference.response": "response",
    "io.seldon.serving.feedback": "feedback",
}
REQUIRED = ("specversion", "type", "id", "source")


def _parse_time(value: str | None, received: datetime) -> datetime:
    if not value:
        return received
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"ce-time {value!r} is not an RFC 3339 time") from exc
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def event_from_http(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    """CloudEvent attributes and raw data from a binary-mode or structured-mode HTTP request."""
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() == "application/cloudevents+json":
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise InputError(f"structured CloudEvent is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise InputError("structured CloudEvent must be a JSON object")
        if "data_base64" in doc:
            data = base64.b64decode(str(doc.pop("data_base64")))
        else:
            data = json.dumps(doc.pop("data", None)).encode()
        attrs = {str(k).lower(): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
        attrs.setdefault("datacontenttype", "application/json")
        return attrs, data
    # the HTTP binding percent-encodes attribute values; receivers decode them
    attrs = {k[3:].lower(): unquote(v) for k, v in headers.items() if k.lower().startswith("ce-")}
    # the distributed-tracing extension travels in its own headers (Knative adds them on the way)
    attrs.update({k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")})
    if ctype:
        attrs["datacontenttype"] = ctype
    return attrs, body


def _stored(attrs: Mapping[str, str], kind: str) -> dict[str, tuple[str, str | None]]:
    """The text columns of ``inference_events`` this event fills: column -> (header it comes from, value)."""
    # Seldon's feedback names the prediction it judges in `requestid`; KServe's halves share ce-id
    by_request = kind == "feedback" and bool(attrs.get("requestid"))
    component = "component" if attrs.get("component") else "endpoint"
    return {
        "event_id": ("ce-requestid" if by_request else "ce-id", attrs["requestid"] if by_request else attrs["id"]),
        "ce_type": ("ce-type", attrs["type"]),
        "ce_source": ("ce-source", attrs["source"]),
        "inference_service": ("ce-inferenceservicename", attrs.get("inferenceservicename")),
        "namespace": ("ce-namespace", attrs.get("namespace")),
        "component": (f"ce-{component}", attrs.get(component) or None),
        "content_type": ("content-type", attrs.get("datacontenttype")),
    }


def validate(attrs: Mapping[str, str], data: bytes) -> str:
    """The half this event is (request, response, feedback), or InputError with the reason."""
    missing = [a for a in REQUIRED if not attrs.get(a)]
    if missing:
        raise InputError(f"missing CloudEvent attribute(s): {', '.join('ce-' + m for m in missing)}")
    if attrs["specversion"] != "1.0":
        raise InputError(f"unsupported ce-specversion {attrs['specversion']!r} (want 1.0)")
    kind = KINDS.get(attrs["type"])
    if kind is None:
        raise InputError(f"unsupported ce-type {attrs['type']!r} (KServe or Seldon inference/feedback types)")
    # a value longer than its column would fail in the database (PostgreSQL, MariaDB) and be answered as
    # "store unavailable", which a retrying sender repeats for ever: it is the sender's to fix
    columns = InferenceEvent.__table__.columns
    for column, (header, value) in _stored(attrs, kind).items():
        limit = getattr(columns[column].type, "length", None)
        if value is not None and limit is not None and len(value) > limit:
            raise InputError(f"{header} is {len(value)} characters long; at most {limit} are stored")
    {"request": parse_request, "response": parse_response, "feedback": parse_feedback}[kind](data)
    return kind


def store_event(agent: Agent, system_id: str, attrs: Mapping[str, str], data: bytes, kind: str,
                now: datetime) -> bool:
    """Commit one event; False when the same half was stored before (a redelivery)."""
    text = {column: value for column, (_, value) in _stored(attrs, kind).items()}
    row = InferenceEvent(
        system_id=system_id, kind=kind, event_time=_parse_time(attrs.get("time"), now), received_at=now,
        body=data.decode("utf-8"), attributes={k: v for k, v in attrs.items() if k not in ("datacontenttype",)},
        **text,
    )
    try:
        with agent.store.transaction() as s:
            s.add(row)
    except StateStoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return False
        if isinstance(exc.__cause__, DataError):
            # a value the database refuses (validate() should have caught it): the event's fault, not the store's
            raise InputError(f"the event does not fit the state store: {str(exc.__cause__.orig).strip()[:200]}"
                             ) from exc
        raise
    return True


async def _body(request: Request, limit: int) -> bytes:
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > limit:
        raise HTTPException(413, f"event body over {limit} bytes (agent.server.max_event_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"event body over {limit} bytes (agent.server.max_event_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def create_router(agent: Agent) -> APIRouter:
    """The ingest routes, protected by the ``ingest`` token scope (``agent.api._auth``), or open without a token
    to the networks of ``agent.server.ingest_without_token_from``."""
    from agent.api import _auth

    open_to = agent.cfg.agent.server.ingest_without_token_from
    if open_to:
        log.warning("the CloudEvents ingest accepts events without a token from %s", ", ".join(open_to))
    router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"],
                       dependencies=[Depends(_auth(agent, "ingest", without_token_from=open_to))])

    limit = agent.cfg.agent.server.max_event_bytes

    async def receive(request: Request, system_id: str) -> JSONResponse:
        body = await _body(request, limit)
        try:
            attrs, data = event_from_http(request.headers, body)
            kind = validate(attrs, data)
            data.decode("utf-8")
        except (InputError, UnicodeDecodeError, ValueError) as exc:
            raise HTTPException(400, f"malformed event: {exc}") from exc
        try:
            # the commit waits on the database: off the event loop, so other requests and scrapes go on
            stored = await run_in_threadpool(store_event, agent, system_id, attrs, data, kind, datetime.now(UTC))
        except InputError as exc:
            raise HTTPException(400, f"malformed event: {exc}") from exc
        except StateStoreError as exc:
            # not stored, so not acknowledged: a logger or broker that retries will send it again
            log.warning("could not store %s event %s: %s", kind, attrs.get("id"), type(exc.__cause__).__name__)
            raise HTTPException(503, "the state store is unavailable; the event was not stored") from exc
        if not stored:
            log.info("duplicate %s event %s ignored", kind, attrs.get("id"))
        return JSONResponse({"stored": stored, "duplicate": not stored, "kind": kind, "id": attrs["id"]},
                            status_code=202 if stored else 200)

    @router.post("/cloudevents", summary="Store one inference-logger CloudEvent")
    async def shared(request: Request) -> Any:
        return await receive(request, "")

    @router.post("/{system_id}/cloudevents", summary="Store one inference-logger CloudEvent for a system")
    async def per_system(system_id: str, request: Request) -> Any:
        if system_id not in {s.id for s in agent.cfg.systems}:
            raise HTTPException(404, f"no system {system_id!r}")
        return await receive(request, system_id)

    return router
