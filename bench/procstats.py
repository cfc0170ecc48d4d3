"""CPU time and memory of process trees, read from ``/proc`` (Linux): what the benchmark and the
profile report per process without a monitoring agent."""

from __future__ import annotations

import os
from pathlib import Path

from stockpulse.ops.services.processes import command_line


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pids) -> float:
    """utime + stime of ``pids`` (their own, not their children's), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 once it has gone)."""
    fields = _stat_fields(pid)
    return int(fields[21]) * os.sysconf("SC_PAGE_SIZE") if fields else 0


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kind_of(pid: int) -> str:
    """What a process under the job is: the Spark JVM, the Python driver, or a Python worker."""
    argv = command_line(pid) or []
    if argv and argv[0].endswith("java"):
        return "spark jvm"
    if any(arg.endswith("consumer.py") for arg in argv):
        return "python driver"
    return "python workers"
