"""Decisions: a state per (system, check, subject) from each window's verdict, with hysteresis.

A window's raw verdict is ok, warning, breach or insufficient_data. The decided state only becomes
``breach`` after ``open_after`` consecutive breaching windows (until then it shows ``warning``), and only
leaves ``breach`` after ``close_after`` consecutive clean windows. A window without enough data never
closes nor opens a breach: not enough data is an outcome, not evidence of recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["ok", "warning", "breach", "insufficient_data"]
STATES: tuple[State, ...] = ("ok", "warning", "breach", "insufficient_data")
SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True)
class Verdict:
    """What one window says about one subject of one check, before hysteresis."""

    check: str  # drift | prediction_drift | data_quality | performance | fairness | collection
    subject: str  # "dataset", a feature, a sensitive feature, a metric name, "source"
    state: State
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Streaks:
    state: State = "insufficient_data"
    breach_streak: int = 0
    ok_streak: int = 0


@dataclass(frozen=True)
class Transition:
    before: State
    after: State

    @property
    def opened(self) -> bool:
        return self.after == "breach" and self.before != "breach"

    @property
    def closed(self) -> bool:
        return self.before == "breach" and self.after != "breach"


def step(prev: Streaks, raw: State, *, open_after: int, close_after: int) -> tuple[Streaks, Transition]:
    """Advance one (system, check, subject) by one window's raw verdict."""
    nxt = Streaks(prev.state, prev.breach_streak, prev.ok_streak)
    if raw == "breach":
        nxt.breach_streak += 1
        nxt.ok_streak = 0
        if prev.state == "breach" or nxt.breach_streak >= open_after:
            nxt.state = "breach"
        else:
            nxt.state = "warning"
    elif raw in ("ok", "warning"):
        nxt.ok_streak += 1
        nxt.breach_streak = 0
        if prev.state == "breach" and nxt.ok_streak < close_after:
            nxt.state = "breach"
        else:
            nxt.state = raw
    elif prev.state not in ("breach", "warning"):
        nxt.state = "insufficient_data"
    return nxt, Transition(prev.state, nxt.state)


def worst(states: list[State]) -> State:
    """The run's overall status: breach beats warning beats ok beats insufficient data."""
    order: tuple[State, ...] = ("breach", "warning", "ok")
    for s in order:
        if s in states:
            return s
    return "insufficient_data"
