"""The one error hierarchy of aims-agent, shared by every layer.

::

    AimsError
    ├── ConfigError            bad configuration; carries every problem found, with its path
    ├── InputError             unreadable or malformed data given to us (file, column, payload)
    │   └── MetricInputError   inputs a metric cannot be computed on (unknown method, bad dtype)
    ├── SourceError            a prediction source failed            (.retryable)
    │   ├── SourceUnavailable  down, slow or refusing: try again next tick
    │   └── SourceQueryError   the source answered but the query is wrong: fix the config
    ├── SinkError              an incident sink failed               (.retryable, .retry_after)
    │   ├── RetryableSinkError 5xx, 429, timeouts, connection refused
    │   └── PermanentSinkError 4xx other than 408/429, bad credentials, bad request
    ├── StateStoreError        the state database failed
    └── EvidenceError          the evidence ledger or a pack is unusable
        └── LedgerIntegrityError  a record was altered, removed, inserted or reordered

"Not enough data" is not an error: metrics report it as an outcome (``insufficient_data``).
Foreign exceptions are translated at the boundary with ``raise Ours(...) from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AimsError(Exception):
    """Root of every error aims-agent raises on purpose."""


def _rebuild(cls: type[AimsError], message: str, keywords: dict[str, Any]) -> AimsError:
    """Unpickle an error whose constructor takes keywords (errors cross from the worker process)."""
    return cls(message, **keywords)


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is (dotted path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(AimsError):
    """The configuration is invalid; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        first = str(problems[0]) if problems else "invalid configuration"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}{first}{more}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[Problem], str]]:
        # rebuilt from its problems, not its message: it crosses from the worker process to the service
        return (type(self), (self.problems, self.source))


class InputError(AimsError):
    """Data handed to aims-agent cannot be used as it is (missing file, missing column, bad payload)."""


class MetricInputError(InputError):
    """A metric cannot be computed on these inputs (unknown method, incompatible dtype)."""


class SourceError(AimsError):
    """A prediction source failed."""

    retryable: bool = True


class SourceUnavailable(SourceError):
    """The source is down, slow or refusing connections; the next tick tries again."""

    retryable = True


class SourceQueryError(SourceError):
    """The source answered but rejected what we asked (bad table, column or query)."""

    retryable = False


class SinkError(AimsError):
    """Delivering an incident to a sink failed."""

    retryable: bool = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), {"retry_after": self.retry_after}))


class RetryableSinkError(SinkError):
    """A transient failure (5xx, 429, timeout, refused): the outbox retries with backoff."""

    retryable = True


class PermanentSinkError(SinkError):
    """A failure that retrying cannot fix (4xx, bad credentials): the outbox parks the message."""

    retryable = False


class StateStoreError(AimsError):
    """The state database failed or is at an unexpected schema version."""


class EvidenceError(AimsError):
    """The evidence ledger or an evidence pack cannot be read."""


class LedgerIntegrityError(EvidenceError):
    """The hash chain is broken: ``seq`` names the first record that was altered, removed or reordered."""

    def __init__(self, message: str, *, seq: int | None) -> None:
        super().__init__(message)
        self.seq = seq

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), {"seq": self.seq}))


class WorkerError(AimsError):
    """The worker process judging windows died or could not start; its check is tried again next tick."""

    retryable = True
