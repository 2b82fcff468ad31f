"""Building agents on the test scenario with remote sinks, and reading the real tools back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import func, select

from agent.exposition import StateCollector
from agent.runner import Agent
from agent.schema import EvidenceRecord, Incident, OutboxMessage
from config.loader import load_config
from connectors.registry import sink_config_model
from tests.conftest import Scenario
from tests.sinks.conftest import RealService


def route(sc: Scenario, sinks: dict[str, dict[str, Any]], **incidents: Any) -> str:
    """Route the scenario's system to ``sinks`` under a fresh system id (so real tools shared by tests
    never mix incidents); returns the id."""
    cfg = sc.config()
    system_id = f"scoring-{uuid.uuid4().hex[:8]}"
    cfg["systems"][0]["id"] = system_id
    cfg["sinks"] = {**cfg["sinks"], **sinks}
    cfg["systems"][0]["incidents"] = {"sinks": ["local", *sinks], **incidents}
    sc.rewrite(cfg)
    return system_id


def agent(sc: Scenario) -> Agent:
    return Agent(load_config(sc.config_path, sink_config=sink_config_model), base_dir=sc.dir)


def incidents(a: Agent) -> list[Incident]:
    with a.store.session() as s:
        return list(s.execute(select(Incident).order_by(Incident.id)).scalars())


def outbox(a: Agent, sink: str) -> list[OutboxMessage]:
    with a.store.session() as s:
        return list(s.execute(select(OutboxMessage).where(OutboxMessage.sink == sink)
                              .order_by(OutboxMessage.id)).scalars())


def metrics(a: Agent) -> str:
    registry = CollectorRegistry()
    registry.register(StateCollector(a.store))
    return generate_latest(registry).decode()


def redmine_issues(rm: RealService, project: str, fingerprint: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{rm.url}/issues.json", headers={"X-Redmine-API-Key": rm.secret}, params={
        "project_id": project, "status_id": "*", f"cf_{rm.extra['cf_id']}": fingerprint}, timeout=30).json()
    return list(got["issues"])


def rt_tickets(rt: RealService, fingerprint: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"token {rt.secret}"}
    got = httpx.get(f"{rt.url}/REST/2.0/tickets", headers=headers,
                    params={"query": f"'CF.{{Incident key}}'='{fingerprint}'"}, timeout=30).json()
    return [httpx.get(f"{rt.url}/REST/2.0/ticket/{t['id']}", headers=headers, timeout=30).json()
            for t in got["items"]]


def am_alerts(am: RealService, fingerprint: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{am.url}/api/v2/alerts", params={"filter": f'aims_fingerprint="{fingerprint}"'}, timeout=30)
    return list(got.json())


def drive(a: Agent, start: datetime, end: datetime, *, step: timedelta = timedelta(minutes=1),
          on_tick: Callable[[datetime], None] | None = None) -> datetime:
    """Run the delivery loop on its own clock from ``start`` to ``end`` (no real sleeping): a pass every
    ``step``, or at the next due attempt when that is later. Returns the time of the last pass."""
    now = start
    while True:
        if on_tick is not None:
            on_tick(now)
        a.outbox.deliver_due(now)
        with a.store.session() as s:
            due = s.execute(select(func.min(OutboxMessage.next_attempt_at))
                            .where(OutboxMessage.status == "pending")).scalar_one_or_none()
        later = now + step if due is None else max(now + step, due.replace(tzinfo=UTC) if due.tzinfo is None else due)
        if later > end:
            return now
        now = later


def local_ticket(sc: Scenario, kind: str) -> dict[str, Any]:
    """The local folder's ticket (its JSON file) of the scenario's incident of ``kind``."""
    for p in (sc.dir / "tickets").glob("*.json"):
        ticket = json.loads(p.read_text())
        if ticket["kind"] == kind:
            return dict(ticket)
    raise AssertionError(f"no {kind} ticket")


def evidence(a: Agent, kind: str) -> list[dict[str, Any]]:
    with a.store.session() as s:
        return [dict(r.payload) for r in s.execute(select(EvidenceRecord).where(EvidenceRecord.kind == kind)
                                                   .order_by(EvidenceRecord.seq)).scalars()]
