"""Detached processes with pid files, so `make up` can start jobs that outlive it and `make down`
(or a test fixture) can stop exactly what was started, process group and all."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.1)
    hint = f"; see {log}" if log else ""
    raise ServiceError(f"{what} did not start listening on {host}:{port} within {timeout:.0f} s{hint}")


def free_port() -> int:
    """A TCP port nothing listens on now (for tests that must not touch a user's services)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(offsets: tuple[int, ...], start: int = 20_000, stop: int = 60_000) -> int:
    """A base port such that ``base + offset`` is free for every offset: a local cluster's nodes
    take ports at fixed distances from one base setting."""
    import random

    for _ in range(500):
        base = random.randrange(start, stop)
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no free block of ports for offsets {offsets}")


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and alive(pid) else None


def start_detached(
    name: str, command: Sequence[str], pid_file: Path, log_file: Path,
    env: Mapping[str, str] | None = None, cwd: Path | None = None,
) -> int:
    """Start ``command`` in its own session (it survives its parent) unless it already runs."""
    running = read_pid(pid_file)
    if running:
        logger.info("%s already running (pid %d)", name, running)
        return running
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    # Logs are the owner's alone (0600): a service may log a connection detail or a secret.
    with os.fdopen(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        os.chmod(log_file, 0o600)
        proc = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    logger.info("started %s (pid %d), log %s", name, proc.pid, log_file)
    return proc.pid


def stop_pid(pid: int, name: str, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout`` seconds.

    Only a process that leads its own group (what :func:`start_detached` starts) is signalled
    as a group; any other process alone, so a job started from a shell never takes the shell's
    other processes with it.
    """
    if pid <= 0:
        raise ValueError(f"refusing to signal pid {pid}")
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not alive(pid):
                logger.info("stopped %s (pid %d)", name, pid)
                return
            time.sleep(0.1)
    logger.warning("%s (pid %d) did not stop", name, pid)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return True


def stop_detached(name: str, pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop what ``pid_file`` names; True when something was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    stop_pid(pid, name, timeout)
    pid_file.unlink(missing_ok=True)
    return True


def command_line(pid: int) -> list[str] | None:
    """The arguments ``pid`` was started with (Linux ``/proc``); None when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def job_env() -> dict[str, str]:
    """Environment for the jobs the stack and the supervisor start: the user's, with the project
    importable and Spark's Python workers on this very interpreter (the venv's)."""
    import sys

    from stockpulse.config import PROJECT_ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    return env
