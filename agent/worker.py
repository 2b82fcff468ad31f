"""Judging windows in a worker process, so the resident service stays small.

Judging a window needs pandas, numpy, pyarrow and scipy: about 200 MiB once imported, and never given
back. The service (``aims-agent run``) holds the API, the scheduler, the outbox and ``/metrics``, none of
which needs them; with ``agent.worker.mode: process`` (the default) it hands each system's check to one
worker process started with ``spawn`` (a fresh interpreter, nothing inherited from the server's threads)
and stopped again after ``agent.worker.idle_exit`` without a check.

The worker works on the same state store as the service: it judges, commits the check run, the decisions,
the incidents and their outbox messages in its own transactions, and returns only what the service logs.
The service keeps holding the system's lock (``agent.coordination``) while the worker judges, so replicas
still judge each window once. A worker whose parent dies exits within a second (it watches its parent),
so no orphan goes on judging under a lock nobody holds. A worker that dies mid-check (killed, out of
memory) fails that check cleanly: the window was not committed, so the next tick judges it again in a new
worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from config.errors import WorkerError
from config.model import AgentConfig

if TYPE_CHECKING:
    from agent.runner import Agent, RunOutcome

log = logging.getLogger("aims.service.worker")  # shown at INFO with the service's log
PARENT_POLL_S = 1.0
WORKER_NICENESS = 10


# -- in the worker process ----------------------------------------------------------------------------
_agent: Agent | None = None


def _watch(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(70)  # the service is gone: stop before judging on under a lock nobody holds


def watch_parent(parent: int) -> None:
    """In a spawned helper process: exit within a second of ``parent`` dying. (A process pool's worker
    holds both ends of its task pipe, so it would otherwise wait for work forever as an orphan.)"""
    threading.Thread(target=_watch, args=(parent,), name="watch-parent", daemon=True).start()


def _init(cfg: AgentConfig, base_dir: Path | None, parent: int, level: int) -> None:
    global _agent
    watch_parent(parent)
    # judging yields the CPU to the service: scrapes, the API and the ingest stay responsive while a
    # window's columns are judged on every core
    os.nice(WORKER_NICENESS)
    from agent.runner import Agent

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [worker] %(message)s")
    _agent = Agent(cfg, base_dir=base_dir)


def _run(system_id: str, reassess: bool) -> list[RunOutcome]:
    from agent.runner import RunOutcome

    assert _agent is not None, "the worker was not initialised"
    outcomes = _agent.run_system(system_id)
    if outcomes and reassess:
        _agent.record_reassessment_triggers()
    # only what the service logs and returns travels back: plain values, so unpickling them in the service
    # never imports numpy (the verdicts and results are in the store)
    return [RunOutcome(o.system_id, o.window_start, o.window_end, o.status, rows=int(o.rows),
                       error=o.error, changes=list(o.changes)) for o in outcomes]


# -- in the service -----------------------------------------------------------------------------------
class CheckWorker:
    """One worker process, started on the first check and stopped after ``idle_exit`` without one."""

    def __init__(self, cfg: AgentConfig, base_dir: Path | None, *, idle_exit: float | None) -> None:
        self._cfg = cfg
        self._base_dir = base_dir
        self.idle_exit = idle_exit
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = time.monotonic()
        self.started = 0  # worker processes started so far (for tests and the log)

    def _executor(self, *, again: bool = False) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=get_context("spawn"), initializer=_init,
                    initargs=(self._cfg, self._base_dir, os.getpid(), logging.getLogger().getEffectiveLevel()))
                self.started += 1
                log.info("started a worker process for checks")
            if not again:
                self._busy += 1
            return self._pool

    def run_system(self, system_id: str, *, reassess: bool = True) -> list[RunOutcome]:
        """Judge the system's due windows in the worker; the caller holds the system's lock."""
        pool = self._executor()
        try:
            try:
                future: Future[list[RunOutcome]] = pool.submit(_run, system_id, reassess)
            except BrokenProcessPool:
                # the worker died while idle (nothing of this check ran yet): start a new one
                self._discard(pool)
                pool = self._executor(again=True)
                future = pool.submit(_run, system_id, reassess)
            return future.result()
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise WorkerError(f"the worker process judging {system_id} died ({exc}); its windows were not "
                              "committed and are judged again at the next tick") from exc
        finally:
            with self._lock:
                self._busy -= 1
                self._last_used = time.monotonic()

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def reap_idle(self) -> bool:
        """Stop the worker process if it has been idle for ``idle_exit``; True when it was stopped."""
        with self._lock:
            pool = self._pool
            idle = time.monotonic() - self._last_used
            if pool is None or self._busy or self.idle_exit is None or idle < self.idle_exit:
                return False
            self._pool = None
        pool.shutdown(wait=True)
        log.info("stopped the idle worker process after %.0f s without a check", idle)
        return True

    @property
    def running(self) -> bool:
        return self._pool is not None

    def pids(self) -> list[int]:
        """The worker's process id, when one runs (for tests and diagnostics)."""
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return sorted(procs)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def worker_for(agent: Agent, now: datetime | None = None) -> CheckWorker | None:
    """The worker the agent's config asks for, or None to judge in-process (``mode: inline``, or a state
    store only this process can see: an in-memory SQLite database)."""
    settings = agent.cfg.agent.worker
    url = agent.cfg.agent.state_url.get_secret_value()
    if settings.mode == "inline" or url.rstrip("/") in ("sqlite:", "sqlite://") or ":memory:" in url:
        return None
    idle = settings.idle_exit.total_seconds() if settings.idle_exit is not None else None
    return CheckWorker(agent.cfg, agent.base_dir, idle_exit=idle)
