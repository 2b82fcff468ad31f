"""The long-running service: APScheduler jobs for each system's checks and the outbox, and the HTTP API.

Jobs never overlap themselves (``max_instances=1``, ``coalesce``), a failing job is logged and counted
without stopping the scheduler, and SIGTERM stops scheduling before the server exits. Several replicas
may share one PostgreSQL state store: each check takes the system's advisory lock first
(``agent.coordination``), so a window is judged by one replica, and when that replica dies the next
one to tick carries on from the committed watermark.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.coordination import SystemLocks, locks_for
from agent.exposition import Exposition, StateCollector
from agent.runner import Agent, RunOutcome
from agent.worker import CheckWorker, worker_for
from config.errors import AimsError, ConfigError, Problem, WorkerError
from config.model import SystemConfig, open_reads_problem

log = logging.getLogger("aims.service")
OUTBOX_EVERY = timedelta(seconds=5)
EXPOSITION_EVERY = timedelta(seconds=60)
PURGE_FIRST = timedelta(minutes=10)
REAP_EVERY = timedelta(seconds=15)


def trigger_for(system: SystemConfig) -> Any:
    if system.schedule.cron:
        return CronTrigger.from_crontab(system.schedule.cron, timezone="UTC")
    assert system.schedule.every is not None
    return IntervalTrigger(seconds=system.schedule.every.total_seconds(), timezone="UTC")


class Service:
    def __init__(self, agent: Agent, *, run_on_start: bool = True, locks: SystemLocks | None = None,
                 worker: CheckWorker | None = None) -> None:
        self.agent = agent
        self.worker = worker
        self.locks: SystemLocks = locks if locks is not None else locks_for(agent.store)
        self.exposition = Exposition(agent.store, StateCollector(
            agent.store, max_series_per_system=agent.cfg.agent.server.max_series_per_system,
            systems=agent.cfg.systems))
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        for system in agent.cfg.systems:
            self.scheduler.add_job(self._check, trigger_for(system), args=[system.id], id=f"check:{system.id}",
                                   name=f"checks of {system.id}")
            if run_on_start:
                self.scheduler.add_job(self._check, args=[system.id], id=f"check-now:{system.id}")
        self.scheduler.add_job(self._deliver, IntervalTrigger(seconds=OUTBOX_EVERY.total_seconds()), id="outbox",
                               name="incident outbox")
        self.scheduler.add_job(self._refresh, IntervalTrigger(seconds=EXPOSITION_EVERY.total_seconds()),
                               id="exposition", name="rebuild /metrics")
        self.scheduler.add_job(self._purge, IntervalTrigger(hours=24), id="retention",
                               name="evidence retention purge", next_run_time=datetime.now(UTC) + PURGE_FIRST)
        if worker is not None:
            self.scheduler.add_job(worker.reap_idle, IntervalTrigger(seconds=REAP_EVERY.total_seconds()),
                                   id="worker-idle", name="stop the idle worker process")

    def run_system(self, system_id: str, *, wait: float = 0.0) -> list[RunOutcome] | None:
        """Judge the system's due windows under its lock, waiting up to ``wait`` seconds for it; None when
        another replica (or another thread of this one) still holds it."""
        with self.locks.hold(system_id, wait=wait) as mine, self.exposition.changing():
            # scrapes meanwhile serve the last /metrics body; one rebuild follows (see Exposition)
            if not mine:
                return None
            if self.worker is not None:
                if not self.agent.anything_due(system_id):
                    return []  # a tick with nothing due does not wake (or keep awake) the worker
                try:
                    outcomes = self.worker.run_system(system_id)
                except WorkerError as exc:
                    self.agent.record_failure(system_id, exc)
                    raise
            else:
                outcomes = self.agent.run_system(system_id)
                if outcomes:
                    self.agent.record_reassessment_triggers(datetime.now(UTC))
        for o in outcomes:
            log.info("system=%s window=%s..%s status=%s rows=%d", system_id, o.window_start.isoformat(),
                     o.window_end.isoformat(), o.status, o.rows)
        return outcomes

    def _check(self, system_id: str) -> None:
        try:
            # the checks' notifications are delivered before /metrics is rebuilt: one build shows both
            with self.exposition.changing():
                outcomes = self.run_system(system_id)
                if outcomes is None:
                    log.debug("checks of %s skipped: another replica holds the lock", system_id)
                elif outcomes:
                    self.agent.deliver()
        except AimsError as exc:
            log.error("checks of %s failed: %s", system_id, exc)

    def _refresh(self) -> None:
        try:
            self.exposition.refresh()
        except AimsError as exc:
            log.error("building /metrics failed: %s", exc)

    def _purge(self) -> None:
        from agent.retention import purge

        try:
            with self.locks.hold("__retention__", wait=0.0) as mine:
                if mine:
                    purge(self.agent.store, self.agent.ledger, datetime.now(UTC),
                          self.agent.cfg.agent.evidence.retention_days)
        except AimsError as exc:
            log.error("evidence retention purge failed: %s", exc)

    def _deliver(self) -> None:
        # each message's failure is contained by the outbox; what reaches here (the state store is down,
        # or a bug) must not end the job, and the next run in 5 s tries again
        try:
            self.agent.deliver()
        except AimsError as exc:
            log.error("outbox delivery failed: %s", exc)
        except Exception:
            log.exception("outbox delivery failed unexpectedly")

    def start(self) -> None:
        # the first body is built before anything is scheduled, so the first scrapes (while the on-start
        # checks commit) are served from it rather than each waiting for a build
        self._refresh()
        self.scheduler.start()

    def alive(self) -> bool:
        return bool(self.scheduler.running)

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.worker is not None:
            self.worker.close()


def build_app(agent: Agent, *, run_on_start: bool = True, worker: CheckWorker | None = None) -> Any:
    """The API with the scheduler started and stopped by its lifespan; checks judged by ``worker`` when
    given, else in this process."""
    from agent.api import create_app

    service = Service(agent, run_on_start=run_on_start, worker=worker)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    return create_app(agent, scheduler_alive=service.alive, lifespan=lifespan, service=service)


#: How the agent's API is served (uvicorn). ``proxy_headers`` off: ``request.client`` is the TCP peer, never an
#: address taken from X-Forwarded-For, so ``agent.server.ingest_without_token_from`` judges who connected.
SERVER_OPTIONS: dict[str, Any] = {"log_level": "info", "access_log": False, "proxy_headers": False}


def check_bind(agent: Agent, host: str) -> None:
    """Refuse a non-loopback ``host`` (the config's or one given on the command line) with no tokens,
    unless ``agent.server.allow_unauthenticated_reads`` is set: the API's reads would be open."""
    problem = open_reads_problem(agent.cfg.agent, host)
    if problem:
        raise ConfigError([Problem("agent.server.host", problem)])


def serve(agent: Agent, *, host: str, port: int) -> None:
    import uvicorn

    check_bind(agent, host)

    # the judged windows are the service's main log; keep them visible under the CLI's WARNING default
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    uvicorn.run(build_app(agent, worker=worker_for(agent)), host=host, port=port, **SERVER_OPTIONS)
