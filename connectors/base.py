"""The two small interfaces of connectors: a Source brings prediction rows in, a Sink carries incidents out.

Both are Protocols, so a third-party plugin needs no base class: it registers a class under the
``aims_agent.sources`` or ``aims_agent.sinks`` entry-point group whose constructor takes its typed
config and whose methods follow these signatures. Errors are those of ``config.errors``: a source
raises ``SourceUnavailable`` (retry next tick) or ``SourceQueryError`` (fix the config), and skips a
single record it cannot read, reporting it through ``ReportsRejected``; a sink raises
``RetryableSinkError`` or ``PermanentSinkError`` and the outbox decides what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from connectors.sources.sql_pushdown import PushdownPlan, WindowAggregates

log = logging.getLogger("aims.sources")


@runtime_checkable
class Source(Protocol):
    """Reads prediction rows. Windows are half-open: ``start <= timestamp < end`` (UTC)."""

    def read_window(self, start: datetime, end: datetime, *, columns: Sequence[str]) -> pd.DataFrame:
        """Rows whose timestamp falls in the window, with (at least) the columns asked for that exist."""
        ...

    def read_all(self, *, columns: Sequence[str]) -> pd.DataFrame:
        """Every row (used for reference data)."""
        ...

    def describe(self) -> str:
        """A short, secret-free description for logs and evidence (e.g. ``postgresql://host/db#table``)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RejectedRecord:
    """A record a source skipped because it cannot become rows (the rest of the window is still read).

    It reaches the data-quality check as a ``bad_record`` finding, so one malformed event or object
    is reported instead of failing (and so blocking) every later window.
    """

    record: str  # what names it: an event id, an object or file name, a source
    reason: str
    count: int = 1  # records it stands for (rows of one file whose timestamp is unreadable)


@runtime_checkable
class ReportsRejected(Protocol):
    """Optional for a Source: the records its last ``read_window`` skipped."""

    def rejected(self) -> list[RejectedRecord]: ...


class Rejections:
    """The records one read of a source skipped: each logged with its reason, then handed to the runner."""

    def __init__(self, describe: str) -> None:
        self._describe = describe
        self._items: list[RejectedRecord] = []

    def clear(self) -> None:
        self._items = []

    def add(self, record: str, reason: str, *, count: int = 1) -> None:
        log.warning("%s: skipped %s: %s", self._describe, record, reason)
        self._items.append(RejectedRecord(record, reason, count))

    def items(self) -> list[RejectedRecord]:
        return list(self._items)


Action = Literal["open", "update", "resolve"]


@dataclass(frozen=True)
class Notice:
    """One change of one incident, rendered by the playbook (content) and handed to a sink (shell)."""

    message_id: int  # the outbox id: a sink that sees it twice must not act twice
    action: Action
    fingerprint: str
    incident_id: int
    system_id: str
    kind: str
    subject: str
    severity: str  # critical | high | medium | low
    title: str
    summary: str
    body_markdown: str
    occurred_at: datetime
    started_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    content: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reinstated:
    """The ticket of an open incident had been closed or deleted in the tool, and the sink put it back."""

    previous_remote_id: str
    previous_state: Literal["closed", "gone"]  # closed by a person, or deleted
    how: Literal["new", "reopened"]  # a new ticket was opened, or the closed one reopened


@dataclass(frozen=True)
class TicketRef:
    """Where the sink put the incident, so later notices for the same fingerprint update it."""

    remote_id: str
    url: str | None = None
    reinstated: Reinstated | None = None  # set when the previous ticket was closed or deleted by hand


@runtime_checkable
class Sink(Protocol):
    """Renders notices natively in one incident tool; ``deliver`` must be idempotent per fingerprint."""

    def deliver(self, notice: Notice, *, known: TicketRef | None) -> TicketRef:
        """Open, update or resolve the ticket for ``notice.fingerprint``; return where it lives."""
        ...

    def describe(self) -> str: ...


@runtime_checkable
class AggregatingSource(Protocol):
    """A source that can summarise a window where the data lives (SQL pushdown) so only aggregates travel."""

    def available_columns(self) -> list[str]:
        """Every column the source has."""
        ...

    def summarise_window(self, start: datetime | None, end: datetime | None, plan: PushdownPlan, *,
                         ids: Any = None) -> WindowAggregates:
        """The aggregates ``plan`` asks for over the window (see ``connectors/sources/sql_pushdown.py``)."""
        ...
