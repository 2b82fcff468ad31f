"""Incident lifecycle and the durable outbox that carries it to the sinks.

One open incident per fingerprint (system, kind, subject): opened when a decision enters ``breach``,
updated when its severity rises (and, with ``incidents.update_every``, reminded with the latest
measurement while it stays open), resolved when the decision leaves ``breach``, and a new incident
when it returns (each sink decides whether that reopens its last ticket or opens a new one). Every
change writes outbox messages in the same transaction, so a crash between deciding and notifying loses
nothing; the delivery loop retries transient failures with backoff and jitter, parks permanent ones,
and keeps messages of one ticket in order. Sinks that must hear about open incidents periodically
(Alertmanager forgets an alert that is not re-posted) implement ``RefreshingSink`` and are refreshed
from the delivery loop.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.decisions import SEVERITY_ORDER, Transition, Verdict
from agent.evidence import Ledger
from agent.playbooks import CHECK_TO_KIND, Content, Playbooks
from agent.schema import Incident, OutboxMessage, SinkTicket
from agent.store import Store
from config.errors import AimsError, ConfigError, SinkError
from config.model import SystemConfig
from connectors.base import Notice, Sink, TicketRef

log = logging.getLogger("aims.incidents")

MAX_BACKOFF_S = 600.0
BASE_BACKOFF_S = 2.0


def fingerprint(system_id: str, kind: str, subject: str) -> str:
    return hashlib.sha256(f"{system_id}\x1f{kind}\x1f{subject}".encode()).hexdigest()[:32]


def utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


@runtime_checkable
class RefreshingSink(Protocol):
    """A sink that must be told about every open incident at least every ``refresh_every``."""

    refresh_every: timedelta

    def refresh(self, notices: Sequence[Notice]) -> None: ...


@dataclass(frozen=True)
class IncidentChange:
    incident_id: int
    action: str  # open | update | resolve
    fingerprint: str
    title: str


class IncidentManager:
    def __init__(self, ledger: Ledger, playbooks: Playbooks, *, links: Mapping[str, str] | None = None) -> None:
        self.ledger = ledger
        self.playbooks = playbooks
        self.links = dict(links or {})

    def open_incident(self, session: Session, fp: str) -> Incident | None:
        return session.execute(select(Incident).where(Incident.open_key == fp)).scalar_one_or_none()

    def apply(
        self,
        session: Session,
        *,
        system: SystemConfig,
        verdict: Verdict,
        transition: Transition,
        window: tuple[datetime, datetime] | None,
        now: datetime,
        evidence_seq: int | None = None,
    ) -> IncidentChange | None:
        kind = CHECK_TO_KIND.get(verdict.check, verdict.check)
        fp = fingerprint(system.id, kind, verdict.subject)
        current = self.open_incident(session, fp)
        links = dict(self.links)
        if evidence_seq is not None:
            links["evidence"] = f"evidence record {evidence_seq}"
        if transition.after == "breach":
            content = self.playbooks_for(system).render(system=system, verdict=verdict, window=window,
                                                        opened_at=utc(current.opened_at) if current else now,
                                                        links=links)
            if current is None:
                return self._open(session, system, kind, verdict.subject, fp, content, now)
            if SEVERITY_ORDER.get(content.severity, 0) > SEVERITY_ORDER.get(current.severity, 0):
                return self._update(session, system, current, content, now, reason="severity rose")
            every = system.incidents.update_every
            if every is not None and now - utc(current.updated_at) >= every:
                return self._remind(session, system, current, content, now)
            return None
        if transition.closed and current is not None:
            return self._resolve(session, system, current, now, reason=verdict.summary or "recovered")
        return None

    def playbooks_for(self, system: SystemConfig) -> Playbooks:
        """The system's playbooks; an unreadable override falls back to the shared ones rather than
        losing the incident, and says so in the log."""
        try:
            return self.playbooks.for_system(system)
        except ConfigError as exc:
            log.error("playbook override of %s unusable, using the shared playbooks: %s", system.id, exc)
            return self.playbooks

    def _remind(self, session: Session, system: SystemConfig, inc: Incident, content: Content,
                now: datetime) -> IncidentChange:
        """The incident is still open after ``update_every``: comment with the latest measurement."""
        inc.updated_at = now
        inc.content = {**inc.content, "measurement": content.data.get("measurement"),
                       "window": content.data.get("window"), "summary": content.summary}
        since = now - utc(inc.opened_at)
        self._enqueue(session, system, inc, "update",
                      f"Still open after {_duration(since)}: {content.summary}", now)
        self.ledger.append(session, "incident_updated", {
            "incident_id": inc.id, "fingerprint": inc.fingerprint, "reason": "still open",
            "severity_before": inc.severity, "severity": inc.severity, "summary": content.summary,
        }, system_id=system.id, now=now)
        return IncidentChange(inc.id, "update", inc.fingerprint, inc.title)

    def _open(self, session: Session, system: SystemConfig, kind: str, subject: str, fp: str,
              content: Content, now: datetime) -> IncidentChange:
        previous = session.execute(select(func.count()).select_from(Incident)
                                   .where(Incident.fingerprint == fp)).scalar_one()
        inc = Incident(fingerprint=fp, system_id=system.id, kind=kind, subject=subject, status="open",
                       severity=content.severity, title=content.title, opened_at=now, updated_at=now,
                       content={**content.data, "summary": content.summary, "body_markdown": content.body_markdown,
                                "recurrence": previous})
        inc.open_key = fp
        session.add(inc)
        session.flush()
        self._enqueue(session, system, inc, "open", content.summary, now)
        self.ledger.append(session, "incident_opened", {
            "incident_id": inc.id, "fingerprint": fp, "kind": kind, "subject": subject,
            "severity": content.severity, "title": content.title, "summary": content.summary,
            "recurrence": previous, "controls_linked": content.data.get("controls", []),
            "owner": content.data.get("owner"), "eu_ai_act": content.data.get("eu_ai_act"),
        }, system_id=system.id, now=now)
        return IncidentChange(inc.id, "open", fp, inc.title)

    def _update(self, session: Session, system: SystemConfig, inc: Incident, content: Content, now: datetime,
                *, reason: str) -> IncidentChange:
        before = inc.severity
        inc.severity = content.severity
        inc.title = content.title
        inc.updated_at = now
        inc.content = {**inc.content, **content.data, "summary": content.summary,
                       "body_markdown": content.body_markdown}
        self._enqueue(session, system, inc, "update", f"{reason}: {before} -> {content.severity}. {content.summary}",
                      now)
        self.ledger.append(session, "incident_updated", {
            "incident_id": inc.id, "fingerprint": inc.fingerprint, "reason": reason,
            "severity_before": before, "severity": content.severity, "summary": content.summary,
        }, system_id=system.id, now=now)
        return IncidentChange(inc.id, "update", inc.fingerprint, inc.title)

    def _resolve(self, session: Session, system: SystemConfig, inc: Incident, now: datetime,
                 *, reason: str) -> IncidentChange:
        inc.status = "resolved"
        inc.resolved_at = now
        inc.updated_at = now
        inc.open_key = None
        self._enqueue(session, system, inc, "resolve", f"Recovered: {reason}", now)
        self.ledger.append(session, "incident_resolved", {
            "incident_id": inc.id, "fingerprint": inc.fingerprint, "reason": reason,
            "opened_at": utc(inc.opened_at), "resolved_at": now,
            "duration_s": (now - utc(inc.opened_at)).total_seconds(),
        }, system_id=system.id, now=now)
        return IncidentChange(inc.id, "resolve", inc.fingerprint, inc.title)

    def _enqueue(self, session: Session, system: SystemConfig, inc: Incident, action: str, summary: str,
                 now: datetime) -> None:
        payload: dict[str, Any] = {
            "summary": summary,
            "occurred_at": now.isoformat(),
        }
        for sink in system.incidents.sinks:
            session.add(OutboxMessage(incident_id=inc.id, fingerprint=inc.fingerprint, sink=sink, action=action,
                                      payload=payload, status="pending", attempts=0, next_attempt_at=now,
                                      created_at=now))


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def backoff(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with full jitter, capped; a server's Retry-After wins when it is longer."""
    ceiling = min(MAX_BACKOFF_S, BASE_BACKOFF_S * (2 ** min(attempts, 16)))
    delay = rng.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


@dataclass
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0


class Outbox:
    """Delivers due messages; one message per transaction, locked so replicas never deliver it twice."""

    def __init__(self, store: Store, ledger: Ledger, sinks: Mapping[str, Sink], *, max_attempts: int = 50,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.sinks = sinks
        self.max_attempts = max_attempts
        self.rng = rng or random.Random()
        self.totals: dict[tuple[str, str], int] = {}
        self._refreshed: dict[str, datetime] = {}

    def pending(self) -> dict[str, int]:
        with self.store.session() as s:
            rows = s.execute(select(OutboxMessage.sink, func.count()).where(OutboxMessage.status == "pending")
                             .group_by(OutboxMessage.sink)).all()
        return {sink: int(n) for sink, n in rows}

    def deliver_due(self, now: datetime | None = None, *, limit: int = 200) -> DeliveryStats:
        now = now or datetime.now(UTC)
        stats = DeliveryStats()
        with self.store.session() as s:
            ids = s.execute(select(OutboxMessage.id).where(OutboxMessage.status == "pending",
                                                           OutboxMessage.next_attempt_at <= now)
                            .order_by(OutboxMessage.id).limit(limit)).scalars().all()
        blocked: set[tuple[str, str]] = set()
        for mid in ids:
            self._deliver_one(mid, now, stats, blocked)
        self.refresh_due(now)
        return stats

    def refresh_due(self, now: datetime) -> None:
        """Re-post open incidents to the sinks that forget them (Alertmanager), each at its own cadence.

        A failed refresh is retried on the next call; it is not an outbox message, because only the
        latest state matters and the next refresh carries it.
        """
        for name, sink in self.sinks.items():
            if not isinstance(sink, RefreshingSink):
                continue
            last = self._refreshed.get(name)
            if last is not None and now - last < sink.refresh_every:
                continue
            notices = self.open_notices(name)
            try:
                sink.refresh(notices)
            except AimsError as exc:
                self.totals[(name, "refresh_failed")] = self.totals.get((name, "refresh_failed"), 0) + 1
                log.warning("refreshing open incidents on %s failed: %s", name, exc)
                continue
            self._refreshed[name] = now

    def open_notices(self, sink: str) -> list[Notice]:
        """A notice per open incident already delivered to ``sink`` whose changes are all delivered."""
        with self.store.session() as s:
            pending = {fp for (fp,) in s.execute(select(OutboxMessage.fingerprint).where(
                OutboxMessage.sink == sink, OutboxMessage.status == "pending")).all()}
            last = (select(OutboxMessage.incident_id, func.max(OutboxMessage.id).label("last_id"))
                    .where(OutboxMessage.sink == sink, OutboxMessage.status == "delivered")
                    .group_by(OutboxMessage.incident_id).subquery())
            rows = s.execute(select(Incident, last.c.last_id)
                             .join(last, last.c.incident_id == Incident.id)
                             .join(SinkTicket, (SinkTicket.fingerprint == Incident.fingerprint)
                                   & (SinkTicket.sink == sink))
                             .where(Incident.open_key.is_not(None)).order_by(Incident.id)).all()
            return [self.notice_for(inc, message_id=int(last), action="update",
                                    summary=str(inc.content.get("summary", "")), occurred=utc(inc.updated_at))
                    for inc, last in rows if inc.fingerprint not in pending]

    def _deliver_one(self, mid: int, now: datetime, stats: DeliveryStats, blocked: set[tuple[str, str]]) -> None:
        with self.store.transaction() as s:
            msg = s.execute(select(OutboxMessage).where(OutboxMessage.id == mid, OutboxMessage.status == "pending")
                            .with_for_update(skip_locked=True)).scalar_one_or_none()
            if msg is None:
                return
            key = (msg.sink, msg.fingerprint)
            earlier = s.execute(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.sink == msg.sink, OutboxMessage.fingerprint == msg.fingerprint,
                OutboxMessage.status == "pending", OutboxMessage.id < msg.id)).scalar_one()
            if key in blocked or earlier:
                blocked.add(key)  # keep one ticket's changes in order
                return
            inc = s.get(Incident, msg.incident_id)
            sink = self.sinks.get(msg.sink)
            if inc is None or sink is None:
                msg.status = "dead"
                msg.last_error = "unknown incident" if inc is None else f"no sink named {msg.sink!r}"
                stats.dead += 1
                return
            known_row = s.get(SinkTicket, (msg.sink, msg.fingerprint))
            known = TicketRef(known_row.remote_id, known_row.url) if known_row else None
            notice = self._notice(msg, inc)
            msg.attempts += 1
            try:
                ref = sink.deliver(notice, known=known)
            except SinkError as exc:
                self._failed(s, msg, inc, exc, now, stats)
                blocked.add(key)
                return
            except AimsError as exc:
                self._failed(s, msg, inc, SinkError(str(exc)), now, stats)
                blocked.add(key)
                return
            msg.status = "delivered"
            msg.delivered_at = now
            msg.last_error = None
            if known_row is None:
                s.add(SinkTicket(sink=msg.sink, fingerprint=msg.fingerprint, remote_id=ref.remote_id,
                                 url=ref.url, updated_at=now))
            else:
                known_row.remote_id, known_row.url, known_row.updated_at = ref.remote_id, ref.url, now
            self.ledger.append(s, "notification_delivered", {
                "incident_id": inc.id, "fingerprint": inc.fingerprint, "action": msg.action, "sink": msg.sink,
                "channel": sink.describe(), "remote_id": ref.remote_id, "attempts": msg.attempts,
                "owner_notified": inc.content.get("owner"),
            }, system_id=inc.system_id, now=now)
            stats.delivered += 1
            self.totals[(msg.sink, "delivered")] = self.totals.get((msg.sink, "delivered"), 0) + 1

    def _failed(self, s: Session, msg: OutboxMessage, inc: Incident, exc: SinkError, now: datetime,
                stats: DeliveryStats) -> None:
        msg.last_error = str(exc)[:2000]
        if exc.retryable and msg.attempts < self.max_attempts:
            msg.next_attempt_at = now + timedelta(seconds=backoff(msg.attempts, exc.retry_after, self.rng))
            stats.retried += 1
            self.totals[(msg.sink, "retried")] = self.totals.get((msg.sink, "retried"), 0) + 1
            log.warning("delivery to %s failed (attempt %d), retrying: %s", msg.sink, msg.attempts, exc)
            return
        msg.status = "dead"
        stats.dead += 1
        self.totals[(msg.sink, "failed")] = self.totals.get((msg.sink, "failed"), 0) + 1
        log.error("delivery to %s failed permanently: %s", msg.sink, exc)
        self.ledger.append(s, "notification_failed", {
            "incident_id": inc.id, "fingerprint": inc.fingerprint, "action": msg.action, "sink": msg.sink,
            "attempts": msg.attempts, "error": str(exc)[:500],
        }, system_id=inc.system_id, now=now)

    @classmethod
    def _notice(cls, msg: OutboxMessage, inc: Incident) -> Notice:
        payload = msg.payload
        occurred = datetime.fromisoformat(str(payload.get("occurred_at"))) if payload.get("occurred_at") else utc(
            inc.updated_at)
        return cls.notice_for(inc, message_id=msg.id, action=msg.action, summary=str(payload.get("summary", "")),
                              occurred=occurred)

    @staticmethod
    def notice_for(inc: Incident, *, message_id: int, action: str, summary: str, occurred: datetime) -> Notice:
        c = inc.content
        return Notice(
            message_id=message_id, action=action,  # type: ignore[arg-type]
            fingerprint=inc.fingerprint, incident_id=inc.id, system_id=inc.system_id, kind=inc.kind,
            subject=inc.subject, severity=inc.severity, title=inc.title, summary=summary,
            body_markdown=str(c.get("body_markdown", "")), occurred_at=occurred, started_at=utc(inc.opened_at),
            labels={"system": inc.system_id, "kind": inc.kind, "subject": inc.subject, "severity": inc.severity,
                    "fingerprint": inc.fingerprint, "status": inc.status},
            content={k: v for k, v in c.items() if k != "body_markdown"},
        )
