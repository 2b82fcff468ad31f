"""Per-stage outcome of checks (read, metrics, commit), kept in the state store for ``/metrics``.

The runner times each stage of a window's check and hands the outcome to its ``stage_hook``;
:class:`StageRecorder` is that hook. It writes one row per (system, stage), so whichever replica ran
the last check, every replica serves the same ``aims_check_stage_success`` and
``aims_check_stage_duration_seconds``: a replica whose last attempt failed does not keep reporting 0
after another one has taken the system over and succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from agent.schema import CheckStage
from agent.store import Store
from config.errors import StateStoreError

log = logging.getLogger("aims.stages")
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class StageRecorder:
    """The runner's ``stage_hook``: upsert the (system, stage) row in its own short transaction."""

    def __init__(self, store: Store, clock: Clock = _now) -> None:
        self.store = store
        self.clock = clock

    def __call__(self, system_id: str, stage: str, seconds: float, ok: bool) -> None:
        # two attempts: a first write of the row that races another process's first write of the same
        # row loses on the primary key, and the second attempt then updates the row the other one made
        for attempt in (1, 2):
            try:
                self._write(system_id, stage, seconds, ok)
                return
            except StateStoreError as exc:
                if attempt == 1 and isinstance(exc.__cause__, IntegrityError):
                    continue
                # a timing that cannot be stored must not turn the check's own outcome into a store
                # error: the check result is committed (or reported) on its own path, and /metrics
                # shows the previous stage outcome until the next write succeeds
                log.warning("recording the %s stage of %s failed: %s", stage, system_id, exc)
                return

    def _write(self, system_id: str, stage: str, seconds: float, ok: bool) -> None:
        with self.store.transaction() as s:
            row = s.get(CheckStage, (system_id, stage))
            now = self.clock()
            if row is None:
                s.add(CheckStage(system_id=system_id, stage=stage, duration_s=seconds, ok=ok, generation=1,
                                 finished_at=now))
            else:
                row.duration_s, row.ok, row.finished_at = seconds, ok, now
                row.generation += 1
