"""Incident lifecycle and the durable outbox that carries it to the sinks.

One open incident per fingerprint (system, kind, subject): opened when a decision enters ``breach``,
updated when its severity rises (and, with ``incidents.update_every``, reminded with the latest
measurement while it stays open), resolved when the decision leaves ``breach``, and a new incident
when it returns (each sink decides whether that reopens its last ticket or opens a new one). Every
change writes outbox messages in the same transaction, so a crash between deciding and notifying loses
nothing. Each message carries what its sink renders (status, severity, title) as of the change.

The delivery loop contains every failure to its message: a retryable error (5xx, 429, timeout) or an
unexpected one (a bug, an undecodable answer that slipped through) is retried with backoff and jitter
for ``agent.outbox.retry_for`` (default 7 days) after its first failure; a permanent error (4xx) is
given up on at once. A message given up on is ``dead``: recorded as ``notification_failed`` evidence,
counted in /metrics, and listed by ``aims-agent outbox list``. The messages of one ticket (sink and
fingerprint) are delivered in order: a later one never overtakes an earlier one that is pending or
dead, so a dead message holds the rest of its ticket until it is requeued (or discarded). Sinks that
must hear about open incidents periodically (Alertmanager forgets an alert that is not re-posted)
implement ``RefreshingSink`` and are refreshed from the delivery loop.
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
from agent.links import IncidentLinks
from agent.playbooks import CHECK_TO_KIND, Content, Playbooks
from agent.schema import Incident, OutboxMessage, SinkTicket
from agent.store import Store
from config.errors import AimsError, ConfigError, InputError, SinkError
from config.model import OutboxConfig, SystemConfig
from connectors.base import Notice, Sink, TicketRef

log = logging.getLogger("aims.incidents")

BASE_BACKOFF_S = 2.0
RETRYABLE, UNEXPECTED, PERMANENT = "retryable", "unexpected", "permanent"


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
    def __init__(self, ledger: Ledger, playbooks: Playbooks, *, links: IncidentLinks | None = None) -> None:
        self.ledger = ledger
        self.playbooks = playbooks
        self.links = links or IncidentLinks()

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
        links = self.links.build(system_id=system.id, kind=kind, evidence_seq=evidence_seq, window=window, now=now)
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
        # what the sinks render is the incident as it was at this change, not as it is when the message
        # is finally delivered: an `open` queued while a tool was down must still open (and page), even
        # if a person acknowledged the incident in the meantime
        payload: dict[str, Any] = {
            "summary": summary,
            "occurred_at": now.isoformat(),
            "status": inc.status,
            "severity": inc.severity,
            "title": inc.title,
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


def backoff(attempts: int, retry_after: float | None, rng: random.Random, *,
            max_backoff_s: float = 600.0) -> float:
    """Exponential backoff with full jitter, capped; a server's Retry-After wins when it is longer."""
    ceiling = min(max_backoff_s, BASE_BACKOFF_S * (2 ** min(attempts, 16)))
    delay = rng.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


@dataclass
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox message as ``aims-agent outbox list`` and the API show it."""

    id: int
    sink: str
    incident_id: int
    fingerprint: str
    action: str
    status: str  # pending | delivered | dead | discarded
    attempts: int
    error_kind: str | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    failing_since: datetime | None
    dead_at: datetime | None
    delivered_at: datetime | None
    held: bool  # pending behind a dead message of the same ticket

    @classmethod
    def of(cls, m: OutboxMessage, *, held: bool = False) -> OutboxEntry:
        return cls(m.id, m.sink, m.incident_id, m.fingerprint, m.action, m.status, m.attempts, m.error_kind,
                   m.last_error, utc(m.created_at), utc(m.next_attempt_at), _opt(m.failing_since), _opt(m.dead_at),
                   _opt(m.delivered_at), held)


def _opt(ts: datetime | None) -> datetime | None:
    return utc(ts) if ts is not None else None


class Outbox:
    """Delivers due messages; one message per transaction, locked so replicas never deliver it twice."""

    def __init__(self, store: Store, ledger: Ledger, sinks: Mapping[str, Sink], *,
                 settings: OutboxConfig | None = None, rng: random.Random | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.sinks = sinks
        self.settings = settings or OutboxConfig()
        self.rng = rng or random.Random()
        self.totals: dict[tuple[str, str], int] = {}
        self._refreshed: dict[str, datetime] = {}

    def _count(self, sink: str, what: str) -> None:
        self.totals[(sink, what)] = self.totals.get((sink, what), 0) + 1

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
            try:
                self._deliver_one(mid, now, stats, blocked)
            except Exception as exc:  # contained to this message: recorded and retried below
                # our own bookkeeping failed for this message (its transaction rolled back): record the
                # failure in a fresh transaction, so it backs off instead of blocking every later message
                log.exception("delivering outbox message %d failed unexpectedly", mid)
                # if this fails too, the store itself is failing: the error ends the pass, the next one retries
                key = self._record_failure(mid, now, UNEXPECTED, f"{type(exc).__name__}: {exc}", None, stats)
                if key is not None:
                    blocked.add(key)
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
            try:
                sink.refresh(self.open_notices(name))
            except Exception as exc:  # one sink's failure must not stop the others' refresh
                self._count(name, "refresh_failed")
                log.warning("refreshing open incidents on %s failed: %s: %s", name, type(exc).__name__, exc,
                            exc_info=not isinstance(exc, AimsError))
                continue
            self._refreshed[name] = now

    def open_notices(self, sink: str) -> list[Notice]:
        """A notice per open incident already delivered to ``sink`` whose changes are all delivered."""
        with self.store.session() as s:
            # a pending change goes first, in order; a dead one does not stop the refresh, which carries
            # the incident's latest state (an alert not re-posted would resolve by itself)
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
            inc = s.get(Incident, msg.incident_id)
            sink = self.sinks.get(msg.sink)
            if inc is None or sink is None:
                # nothing can ever deliver it, nor anything after it: each such message is dead on its own
                self._dead(s, msg, inc, PERMANENT, "unknown incident" if inc is None else
                           f"no sink named {msg.sink!r}", now, stats)
                return
            key = (msg.sink, msg.fingerprint)
            earlier = s.execute(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.sink == msg.sink, OutboxMessage.fingerprint == msg.fingerprint,
                OutboxMessage.status.in_(("pending", "dead")), OutboxMessage.id < msg.id)).scalar_one()
            if key in blocked or earlier:
                blocked.add(key)  # keep one ticket's changes in order, behind a pending or a dead one
                return
            known_row = s.get(SinkTicket, (msg.sink, msg.fingerprint))
            known = TicketRef(known_row.remote_id, known_row.url) if known_row else None
            notice = self._notice(msg, inc)
            msg.attempts += 1
            try:
                ref = sink.deliver(notice, known=known)
            except SinkError as exc:
                self._failed(s, msg, inc, RETRYABLE if exc.retryable else PERMANENT, str(exc), exc.retry_after,
                             now, stats)
                blocked.add(key)
                return
            except Exception as exc:  # a sink bug or an untranslated error: retried, visible
                log.exception("sink %s failed unexpectedly on message %d", msg.sink, msg.id)
                self._failed(s, msg, inc, UNEXPECTED, f"{type(exc).__name__}: {exc}", None, now, stats)
                blocked.add(key)
                return
            msg.status = "delivered"
            msg.delivered_at = now
            msg.last_error = msg.error_kind = None
            msg.failing_since = None
            if known_row is None:
                s.add(SinkTicket(sink=msg.sink, fingerprint=msg.fingerprint, remote_id=ref.remote_id,
                                 url=ref.url, updated_at=now))
            else:
                known_row.remote_id, known_row.url, known_row.updated_at = ref.remote_id, ref.url, now
            if ref.reinstated is not None:
                # the ticket was closed or deleted in the tool while the incident was still open
                r = ref.reinstated
                self.ledger.append(s, "ticket_reinstated", {
                    "incident_id": inc.id, "fingerprint": inc.fingerprint, "sink": msg.sink, "action": msg.action,
                    "previous_remote_id": r.previous_remote_id, "previous_state": r.previous_state, "how": r.how,
                    "remote_id": ref.remote_id, "url": ref.url,
                }, system_id=inc.system_id, now=now)
                log.warning("ticket %s on %s was %s in the tool while incident %d is open: %s %s",
                            r.previous_remote_id, msg.sink, r.previous_state, inc.id,
                            "reopened it as" if r.how == "reopened" else "opened", ref.remote_id)
            self.ledger.append(s, "notification_delivered", {
                "incident_id": inc.id, "fingerprint": inc.fingerprint, "action": msg.action, "sink": msg.sink,
                "channel": sink.describe(), "remote_id": ref.remote_id, "attempts": msg.attempts,
                "owner_notified": inc.content.get("owner"),
            }, system_id=inc.system_id, now=now)
            stats.delivered += 1
            self._count(msg.sink, "delivered")

    def _record_failure(self, mid: int, now: datetime, kind: str, error: str, retry_after: float | None,
                        stats: DeliveryStats) -> tuple[str, str] | None:
        with self.store.transaction() as s:
            msg = s.get(OutboxMessage, mid)
            if msg is None or msg.status != "pending":
                return None
            msg.attempts += 1
            self._failed(s, msg, s.get(Incident, msg.incident_id), kind, error, retry_after, now, stats)
            return (msg.sink, msg.fingerprint)

    def _failed(self, s: Session, msg: OutboxMessage, inc: Incident | None, kind: str, error: str,
                retry_after: float | None, now: datetime, stats: DeliveryStats) -> None:
        msg.last_error = error[:2000]
        msg.error_kind = kind
        since = utc(msg.failing_since) if msg.failing_since is not None else now
        msg.failing_since = since
        if kind != PERMANENT and now - since < self.settings.retry_for:
            delay = backoff(msg.attempts, retry_after, self.rng,
                            max_backoff_s=self.settings.max_backoff.total_seconds())
            msg.next_attempt_at = now + timedelta(seconds=delay)
            stats.retried += 1
            self._count(msg.sink, "retried")
            log.warning("delivery to %s failed (%s, attempt %d), retrying in %.0f s: %s", msg.sink, kind,
                        msg.attempts, delay, error)
            return
        why = error if kind == PERMANENT else (f"still failing after {_duration(now - since)} "
                                               f"(agent.outbox.retry_for): {error}")
        self._dead(s, msg, inc, kind, why, now, stats)

    def _dead(self, s: Session, msg: OutboxMessage, inc: Incident | None, kind: str, why: str, now: datetime,
              stats: DeliveryStats) -> None:
        msg.status = "dead"
        msg.error_kind = kind
        msg.last_error = why[:2000]
        msg.dead_at = msg.dead_at or now
        stats.dead += 1
        self._count(msg.sink, "failed")
        log.error("delivery of message %d to %s given up on: %s", msg.id, msg.sink, why)
        self.ledger.append(s, "notification_failed", {
            "incident_id": msg.incident_id, "fingerprint": msg.fingerprint, "action": msg.action,
            "sink": msg.sink, "message_id": msg.id, "attempts": msg.attempts, "error_kind": kind,
            "error": why[:500],
            "failing_since": utc(msg.failing_since) if msg.failing_since is not None else None,
        }, system_id=inc.system_id if inc is not None else None, now=now)

    # -- operating the outbox -----------------------------------------------------------------------
    def entries(self, *, status: str | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Messages newest first (``status`` filters); pending ones behind a dead one are marked held."""
        with self.store.session() as s:
            q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
            if status:
                q = q.where(OutboxMessage.status == status)
            rows = list(s.execute(q).scalars())
            dead = {(sink, fp): int(first) for sink, fp, first in s.execute(
                select(OutboxMessage.sink, OutboxMessage.fingerprint, func.min(OutboxMessage.id))
                .where(OutboxMessage.status == "dead").group_by(OutboxMessage.sink, OutboxMessage.fingerprint)).all()}
        return [OutboxEntry.of(m, held=m.status == "pending" and dead.get((m.sink, m.fingerprint), m.id) < m.id)
                for m in rows]

    def requeue(self, message_id: int, *, by: str, reason: str | None = None,
                now: datetime | None = None) -> OutboxEntry | None:
        """Give a dead message a fresh retry budget, due now; None if there is no such message."""
        return self._operate(message_id, "pending", "notification_requeued", by=by, reason=reason, now=now)

    def discard(self, message_id: int, *, by: str, reason: str, now: datetime | None = None) -> OutboxEntry | None:
        """Abandon a dead message for good, releasing the later messages of its ticket."""
        return self._operate(message_id, "discarded", "notification_discarded", by=by, reason=reason, now=now)

    def _operate(self, message_id: int, to: str, kind: str, *, by: str, reason: str | None = None,
                 now: datetime | None = None) -> OutboxEntry | None:
        now = now or datetime.now(UTC)
        with self.store.transaction() as s:
            msg = s.execute(select(OutboxMessage).where(OutboxMessage.id == message_id)
                            .with_for_update()).scalar_one_or_none()
            if msg is None:
                return None
            if msg.status != "dead":
                raise InputError(f"outbox message {message_id} is {msg.status}, not dead: only a dead message can "
                                 f"be {'requeued' if to == 'pending' else 'discarded'}")
            inc = s.get(Incident, msg.incident_id)
            self.ledger.append(s, kind, {
                "message_id": msg.id, "incident_id": msg.incident_id, "fingerprint": msg.fingerprint,
                "sink": msg.sink, "action": msg.action, "by": by, "last_error": (msg.last_error or "")[:500],
                **({"reason": reason} if reason else {}),
            }, system_id=inc.system_id if inc is not None else None, now=now)
            msg.status = to
            if to == "pending":
                msg.next_attempt_at = now
                msg.failing_since = None
                msg.error_kind = None
            s.flush()
            return OutboxEntry.of(msg)

    @classmethod
    def _notice(cls, msg: OutboxMessage, inc: Incident) -> Notice:
        payload = msg.payload
        occurred = datetime.fromisoformat(str(payload.get("occurred_at"))) if payload.get("occurred_at") else utc(
            inc.updated_at)
        # messages queued before the payload carried a snapshot fall back to the incident as it is now
        return cls.notice_for(inc, message_id=msg.id, action=msg.action, summary=str(payload.get("summary", "")),
                              occurred=occurred, status=str(payload.get("status") or inc.status),
                              severity=str(payload.get("severity") or inc.severity),
                              title=str(payload.get("title") or inc.title))

    @staticmethod
    def notice_for(inc: Incident, *, message_id: int, action: str, summary: str, occurred: datetime,
                   status: str | None = None, severity: str | None = None, title: str | None = None) -> Notice:
        c = inc.content
        status, severity = status or inc.status, severity or inc.severity
        return Notice(
            message_id=message_id, action=action,  # type: ignore[arg-type]
            fingerprint=inc.fingerprint, incident_id=inc.id, system_id=inc.system_id, kind=inc.kind,
            subject=inc.subject, severity=severity, title=title or inc.title, summary=summary,
            body_markdown=str(c.get("body_markdown", "")), occurred_at=occurred, started_at=utc(inc.opened_at),
            labels={"system": inc.system_id, "kind": inc.kind, "subject": inc.subject, "severity": severity,
                    "fingerprint": inc.fingerprint, "status": status},
            content={k: v for k, v in c.items() if k != "body_markdown"},
        )
