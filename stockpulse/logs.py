"""Logging set-up, done once per entry point so library modules only ever call getLogger."""

from __future__ import annotations

import logging
import os


def configure(level: str | None = None) -> None:
    """Log to stderr as ``time level name: message``; LOG_LEVEL overrides the level."""
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,  # under spark-submit something has configured the root logger already
    )
    # kafka-python logs every refused connection at ERROR; the project reports those itself in
    # one line, so only its critical messages come through.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    for noisy in ("py4j", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
