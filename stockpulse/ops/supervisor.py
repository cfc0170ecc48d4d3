"""Keep exactly one streaming consumer alive: start it, restart it when stalled, or run a catch-up.

The consumer is the same detached process ``make up`` starts (same command, pid file, log and
environment), so the stack and Airflow always agree on whether it runs. Whether it runs is read
from the job lock the consumer itself holds for its whole life (see :mod:`stockpulse.stream.cli`),
not from a pid file alone; a pid is only ever signalled after ``/proc/<pid>/cmdline`` shows it
is the consumer, so a stale pid file never kills an unrelated process. Every decision to start or
stop the job is also taken holding the supervisors' own lock file in the state directory, so two
supervisors (Airflow, ``make up``) never act at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from stockpulse.config import PROJECT_ROOT, ConsumerSettings, StackSettings
from stockpulse.stream.job_files import JobFiles, lock_pid
from stockpulse.errors import ServiceError, StockPulseError
from stockpulse import locks
from stockpulse.ops.services import processes

logger = logging.getLogger(__name__)

START, RESTART, NOTHING = "start", "restart", "none"


@dataclass(frozen=True)
class Decision:
    action: str  # START | RESTART | NOTHING
    reason: str


def decide(pid: int | None, stalls: Sequence[object], lag: int) -> Decision:
    """What to do with the consumer.

    ``stalls`` are the sinks that lag and have committed nothing for longer than the threshold
    (:func:`stockpulse.ops.health.stalls`, the very rule the health report judges by):
    one stuck query is enough, even while the other keeps committing.
    """
    if pid is None:
        return Decision(START, "consumer is not running")
    if stalls:
        return Decision(RESTART, f"consumer (pid {pid}) is stalled: " + "; ".join(map(str, stalls)))
    if lag > 0:
        return Decision(NOTHING, f"consumer (pid {pid}) is working through {lag} records")
    return Decision(NOTHING, f"consumer (pid {pid}) is running and up to date")


@dataclass(frozen=True)
class ConsumerPaths:
    """The files ``make up`` uses for the consumer; Airflow must use the very same ones."""

    pid_file: Path
    log_file: Path
    lock_file: Path  # the supervisors' lock: one decision at a time
    job: JobFiles  # the job's own lock and heartbeat, beside its checkpoints

    @classmethod
    def of(cls, s: StackSettings, consumer: ConsumerSettings | None = None) -> "ConsumerPaths":
        consumer = consumer or s.consumer
        return cls(s.paths.pid_file("consumer"), s.paths.log_file("consumer"),
                   s.paths.run / "consumer.lock", JobFiles.of(consumer.checkpoint_dir, s.state_dir))


def consumer_command(once: bool = False) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "consumer" / "consumer.py"), *(["--once"] if once else [])]


@contextmanager
def consumer_lock(lock_file: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold the exclusive supervisors' lock; a second holder waits up to ``timeout`` seconds."""
    handle = locks.acquire_lock(lock_file, timeout, interval=1.0)
    if handle is None:
        raise ServiceError(f"another supervisor holds {lock_file} for more than {timeout:.0f} s "
                           "(a catch-up run may be in progress)")
    with handle:
        yield


def is_consumer(pid: int) -> bool:
    """True when ``pid`` is a running StockPulse consumer (by its command line)."""
    args = processes.command_line(pid) or []
    return processes.alive(pid) and any(Path(a).name == "consumer.py" or a == "stockpulse.stream.cli" for a in args)


def running_consumer(paths: ConsumerPaths) -> int | None:
    """The pid of the running consumer, or None.

    Running means holding the job lock; a consumer the pid file names that has not taken the lock
    yet (it is still importing) counts too. A lock held by a process that cannot be identified as
    the consumer is an error: nothing may start a second job, and nothing may signal a stranger.
    """
    from_file = processes.read_pid(paths.pid_file)
    if locks.lock_held(paths.job.lock):
        holder = lock_pid(paths.job.lock)
        for pid in (holder, from_file):
            if pid and is_consumer(pid):
                return pid
        raise ServiceError(f"{paths.job.lock} is held by a process that is not a StockPulse consumer on this "
                           f"machine (pid {holder or 'unknown'}): stop it by hand before the supervisor takes over")
    return from_file if from_file and is_consumer(from_file) else None


def started_at(paths: ConsumerPaths) -> float | None:
    """When the running consumer was started: the pid file is written at start, the job lock
    when the job takes it (a consumer started by hand has only the latter)."""
    moments = []
    for path in (paths.pid_file, paths.job.lock):
        try:
            moments.append(path.stat().st_mtime)
        except FileNotFoundError:
            pass
    return max(moments, default=None)


def start(s: StackSettings, paths: ConsumerPaths) -> int:
    """Start the streaming consumer detached, exactly as ``make up`` does, unless one runs."""
    running = running_consumer(paths)
    if running is not None:
        logger.info("consumer already running (pid %d)", running)
        return running
    _forget(paths.pid_file)
    return processes.start_detached("consumer", consumer_command(), paths.pid_file, paths.log_file,
                                    env=processes.job_env(), cwd=PROJECT_ROOT)


def stop(paths: ConsumerPaths, timeout: float = 30.0) -> bool:
    """Stop the running consumer (its process group); True when one was running."""
    pid = running_consumer(paths)
    if pid is None:
        _forget(paths.pid_file)
        return False
    _resume(pid)
    processes.stop_pid(pid, "consumer", timeout)
    paths.pid_file.unlink(missing_ok=True)
    return True


def _forget(pid_file: Path) -> None:
    """Remove a pid file that names no consumer; a live stranger under that pid is left alone."""
    stranger = processes.read_pid(pid_file)
    if stranger is not None:
        logger.warning("%s names pid %d, which is not the consumer (%s): leaving that process alone",
                       pid_file, stranger, " ".join(processes.command_line(stranger) or ["?"])[:200])
    pid_file.unlink(missing_ok=True)


def apply(decision: Decision, s: StackSettings, paths: ConsumerPaths) -> int | None:
    """Carry out ``decision`` (the caller holds the supervisors' lock); returns the consumer's pid."""
    logger.info("supervisor: %s: %s", decision.action, decision.reason)
    if decision.action == RESTART:
        stop(paths)
    if decision.action in (START, RESTART):
        return start(s, paths)
    return running_consumer(paths)


def _resume(pid: int) -> None:
    """SIGCONT the job's group first: a stopped process would hold SIGTERM pending until SIGKILL."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGCONT)
        else:
            os.kill(pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass


def run_catch_up(s: StackSettings, paths: ConsumerPaths) -> int:
    """Stop the streaming consumer if it runs, then process the backlog with ``--once`` here.

    The catch-up is the consumer too: it holds the job lock while it runs (and its pid goes into
    the consumer's pid file), so ``make up`` cannot start a second copy meanwhile. The
    streaming consumer stays stopped; the next scheduled supervise run starts it again. A time
    limit is the task's ``execution_timeout``: Airflow then interrupts us and the ``finally``
    stops the job's process group. Returns the number of output lines relayed to the task log.
    """
    if stop(paths):
        logger.info("stopped the streaming consumer for the catch-up; the next supervise run restarts it")
    paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(consumer_command(once=True), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=processes.job_env(), cwd=PROJECT_ROOT, text=True,
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
