"""The long-running service: APScheduler jobs for each system's checks and the outbox, and the HTTP API.

Jobs never overlap themselves (``max_instances=1``, ``coalesce``), a failing job is logged and counted
without stopping the scheduler, and SIGTERM stops scheduling before the server exits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.runner import Agent
from config.errors import AimsError
from config.model import SystemConfig

log = logging.getLogger("aims.service")
OUTBOX_EVERY = timedelta(seconds=5)


def trigger_for(system: SystemConfig) -> Any:
    if system.schedule.cron:
        return CronTrigger.from_crontab(system.schedule.cron, timezone="UTC")
    assert system.schedule.every is not None
    return IntervalTrigger(seconds=system.schedule.every.total_seconds(), timezone="UTC")


class Service:
    def __init__(self, agent: Agent, *, run_on_start: bool = True) -> None:
        self.agent = agent
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        for system in agent.cfg.systems:
            self.scheduler.add_job(self._check, trigger_for(system), args=[system.id], id=f"check:{system.id}",
                                   name=f"checks of {system.id}")
            if run_on_start:
                self.scheduler.add_job(self._check, args=[system.id], id=f"check-now:{system.id}")
        self.scheduler.add_job(self._deliver, IntervalTrigger(seconds=OUTBOX_EVERY.total_seconds()), id="outbox",
                               name="incident outbox")

    def _check(self, system_id: str) -> None:
        try:
            for o in self.agent.run_system(system_id):
                log.info("system=%s window=%s..%s status=%s rows=%d", system_id, o.window_start.isoformat(),
                         o.window_end.isoformat(), o.status, o.rows)
            self.agent.deliver()
        except AimsError as exc:
            log.error("checks of %s failed: %s", system_id, exc)

    def _deliver(self) -> None:
        try:
            self.agent.deliver()
        except AimsError as exc:
            log.error("outbox delivery failed: %s", exc)

    def start(self) -> None:
        self.scheduler.start()

    def alive(self) -> bool:
        return bool(self.scheduler.running)

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)


def build_app(agent: Agent, *, run_on_start: bool = True) -> Any:
    """The API with the scheduler started and stopped by its lifespan."""
    from agent.api import create_app

    service = Service(agent, run_on_start=run_on_start)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    return create_app(agent, scheduler_alive=service.alive, lifespan=lifespan)


def serve(agent: Agent, *, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(agent), host=host, port=port, log_level="info", access_log=False)
