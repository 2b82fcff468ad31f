"""Value types for command-line options: each rejects a bad value with a one-line reason, which the
CLI's parser turns into exit 2 (never a value that only fails, or quietly means nothing, later)."""

from __future__ import annotations

import argparse
import math


def _whole(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not {what}") from None


def positive_int(raw: str) -> int:
    """A whole number of at least 1 (days, group sizes)."""
    value = _whole(raw, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be at least 1")
    return value


def port(raw: str) -> int:
    """A TCP port, 1 to 65535."""
    value = _whole(raw, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 1 and 65535")
    return value


def finite(raw: str) -> float:
    """Any finite number (``nan`` and ``inf`` would make every comparison false or true)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a finite number")
    return value


def positive(raw: str) -> float:
    """A finite number greater than 0."""
    value = finite(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must be greater than 0")
    return value


def non_negative(raw: str) -> float:
    """A finite number of at least 0."""
    value = finite(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must be 0 or more")
    return value


def share(raw: str) -> float:
    """A share in (0, 1]."""
    value = finite(raw)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be greater than 0 and at most 1")
    return value


def open_unit(raw: str) -> float:
    """A level strictly between 0 and 1 (a false discovery rate)."""
    value = finite(raw)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be strictly between 0 and 1")
    return value
