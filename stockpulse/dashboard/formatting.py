"""How the header metrics read: pure functions from numbers to the strings the page shows."""

from __future__ import annotations

from datetime import datetime, timezone


def rows(count: int, estimated: bool) -> str:
    """``1,234``, or ``≈5,000,000`` when the count is PostgreSQL's estimate."""
    return f"≈{count:,}" if estimated else f"{count:,}"


def rate(ticks_per_second: float) -> str:
    return f"{ticks_per_second:,.2f}"


def age(seconds: float | None) -> str:
    """``12 s``, ``5 min``, ``3 h``, ``2 d``; ``–`` before the first tick.

    Whole units only, so the number does not flicker on every refresh.
    """
    if seconds is None:
        return "–"
    whole = int(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if whole >= 2 * size:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def moment(value: datetime | None) -> str:
    """A timestamp in UTC as ``2026-11-22 10:00:00`` (the label says UTC); ``–`` before the first tick."""
    if value is None:
        return "–"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
