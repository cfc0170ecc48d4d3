"""Keep exactly one streaming consumer alive: start it, restart it when stalled, or run a catch-up.

The consumer is the same detached process ``make up`` starts (same command, pid file, log and
environment), so the stack and Airflow always agree on whether it runs. Every decision to start
or stop it is taken while holding an exclusive lock file in the state directory, and a bounded
catch-up (``consumer.py --once``) writes its pid into the same pid file, so the job never runs
twice against the same checkpoints.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from stockpulse.config import PROJECT_ROOT, StackSettings
from stockpulse.errors import ServiceError, StockPulseError
from stockpulse.services import processes

logger = logging.getLogger(__name__)

START, RESTART, NOTHING = "start", "restart", "none"


@dataclass(frozen=True)
class Decision:
    action: str  # START | RESTART | NOTHING
    reason: str


def decide(pid: int | None, progress_age: float | None, lag: int, stall_after: float) -> Decision:
    """What to do with the consumer.

    ``progress_age`` is the time since it last committed a batch or was started, whichever is
    later. A consumer with nothing to read makes no batches, so silence only counts as a stall
    while records wait on the broker.
    """
    if pid is None:
        return Decision(START, "consumer is not running")
    if lag > 0 and progress_age is not None and progress_age > stall_after:
        return Decision(RESTART, f"consumer (pid {pid}) committed nothing for {progress_age:.0f} s "
                                 f"(threshold {stall_after:.0f} s) while {lag} records wait")
    if lag > 0:
        return Decision(NOTHING, f"consumer (pid {pid}) is working through {lag} records")
    return Decision(NOTHING, f"consumer (pid {pid}) is running and up to date")


def progress_age(now: float, started_at: float | None, committed_at: list[float | None]) -> float | None:
    """Seconds since the latest sign of life: the process start or any sink's latest commit."""
    moments = [t for t in [started_at, *committed_at] if t is not None]
    return now - max(moments) if moments else None


@dataclass(frozen=True)
class ConsumerPaths:
    """The files ``make up`` uses for the consumer; Airflow must use the very same ones."""

    pid_file: Path
    log_file: Path
    lock_file: Path

    @classmethod
    def of(cls, s: StackSettings) -> "ConsumerPaths":
        return cls(s.state_dir / "run" / "consumer.pid", s.state_dir / "logs" / "consumer.log",
                   s.state_dir / "run" / "consumer.lock")


def consumer_command(once: bool = False) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "consumer" / "consumer.py"), *(["--once"] if once else [])]


@contextmanager
def consumer_lock(lock_file: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold the exclusive consumer lock; a second holder waits up to ``timeout`` seconds."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError(f"another supervisor holds {lock_file} for more than {timeout:.0f} s "
                                       "(a catch-up run may be in progress)") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def started_at(pid_file: Path) -> float | None:
    """When the running consumer was started (the pid file is written at start)."""
    try:
        return pid_file.stat().st_mtime
    except FileNotFoundError:
        return None


def start(s: StackSettings, paths: ConsumerPaths) -> int:
    """Start the streaming consumer detached, exactly as ``make up`` does."""
    from stockpulse.stack import job_env

    return processes.start_detached("consumer", consumer_command(), paths.pid_file, paths.log_file,
                                    env=job_env(s), cwd=PROJECT_ROOT)


def apply(decision: Decision, s: StackSettings, paths: ConsumerPaths, pid: int | None) -> int | None:
    """Carry out ``decision`` (the caller holds the lock); returns the consumer's pid."""
    logger.info("supervisor: %s: %s", decision.action, decision.reason)
    if decision.action == RESTART and pid is not None:
        _resume(pid)
        processes.stop_detached("consumer", paths.pid_file, timeout=30)
    if decision.action in (START, RESTART):
        return start(s, paths)
    return pid


def _resume(pid: int) -> None:
    """SIGCONT the job's group first: a stopped process would hold SIGTERM pending until SIGKILL."""
    try:
        os.killpg(pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass


def run_catch_up(s: StackSettings, paths: ConsumerPaths) -> int:
    """Stop the streaming consumer if it runs, then process the backlog with ``--once`` here.

    The catch-up's pid goes into the consumer's pid file while it runs, so ``make up`` (which
    starts the consumer only when that pid is dead) cannot start a second copy meanwhile. The
    streaming consumer stays stopped; the next scheduled supervise run starts it again. A time
    limit is the task's ``execution_timeout``: Airflow then interrupts us and the ``finally``
    stops the job's process group. Returns the number of output lines relayed to the task log.
    """
    from stockpulse.stack import job_env

    if processes.stop_detached("consumer", paths.pid_file, timeout=30):
        logger.info("stopped the streaming consumer for the catch-up; the next supervise run restarts it")
    paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(consumer_command(once=True), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=job_env(s), cwd=PROJECT_ROOT, text=True,
                            start_new_session=True)
    paths.pid_file.write_text(f"{proc.pid}\n")
    lines = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines += 1
            logger.info("consumer --once: %s", line.rstrip())
        code = proc.wait()
    finally:
        if proc.poll() is None:
            processes.stop_pid(proc.pid, "consumer --once", timeout=30)
        paths.pid_file.unlink(missing_ok=True)
    if code != 0:
        raise StockPulseError(f"consumer --once exited with code {code}; see the lines above")
    return lines
