"""The airflow service for `make up` (placeholder until its issue lands: starts nothing)."""

from __future__ import annotations

from stockpulse.config import StackSettings


def start(s: StackSettings) -> None:
    """Start the airflow detached (idempotent)."""


def stop(s: StackSettings) -> bool:
    """Stop it; True when something was running."""
    return False


def running(s: StackSettings) -> bool:
    return False


def describe(s: StackSettings) -> str:
    return "not set up yet"
