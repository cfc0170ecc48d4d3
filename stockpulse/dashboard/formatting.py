"""How the page's numbers read: pure functions from values to the strings the page shows."""

from __future__ import annotations

import re
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


def thin_share(thin: list[str], below: float) -> str | None:
    """The share view's note on bars too thin to see: ``000001.SS: under 0.5 % of the volume ...``."""
    if not thin:
        return None
    names = ", ".join(literal(name) for name in thin)  # index names are data: inert in the caption's Markdown
    return f"{names}: under {below:.1%} of the volume and of the trade value in this window, too little to see."


def no_volume(idle: list[str], shown: list[str]) -> str | None:
    """The share view's note on indices without volume: ``HSI, NYA: no volume in this window.``

    ``idle`` are the indices that traded nothing, ``shown`` all indices in the window; None when
    every index traded. The oldest history has volume 0 throughout, hence the hint when none did.
    """
    if not idle:
        return None
    if set(idle) >= set(shown):
        return "No index traded any volume in this window (the oldest history has volume 0), so there are no shares."
    return f"{', '.join(literal(name) for name in idle)}: no volume in this window."


_MARKDOWN = re.compile(r"([!-/:-@\[-`{-~])")
"""ASCII punctuation: CommonMark lets a backslash make any of it literal."""


def literal(text: str) -> str:
    """``text`` as Markdown that renders exactly ``text``: Streamlit renders table cells and captions
    as Markdown, so a ``[link](...)``, ``**bold**``, ``$x$`` or ``:red[x]`` in data must be made inert."""
    return _MARKDOWN.sub(r"\\\1", text)
