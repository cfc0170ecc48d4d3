"""Advisory file locks (``flock``): how one process tells the others "this is mine" without a server.

The job lock, the supervisors' lock and the jar cache's lock are all these; a lock dies with its
process, so a ``kill -9`` never leaves a stale lock behind (unlike a pid file).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO


def try_lock(path: Path) -> IO[str] | None:
    """An open handle holding an exclusive ``flock`` on ``path`` (created if missing), or None
    when another process holds it. The lock lasts until the handle is closed or the process ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def acquire_lock(path: Path, timeout: float, interval: float = 0.2) -> IO[str] | None:
    """:func:`try_lock`, retried for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        handle = try_lock(path)
        if handle is not None or time.monotonic() >= deadline:
            return handle
        time.sleep(interval)


def lock_held(path: Path) -> bool:
    """True when some process holds an exclusive ``flock`` on ``path``.

    The probe takes a shared lock for an instant (never creating the file), so probes do not
    block one another; a holder taking the lock at that very instant must retry briefly, which
    :func:`acquire_lock` does.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
