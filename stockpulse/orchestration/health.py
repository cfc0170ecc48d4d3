"""Is the pipeline healthy: is the consumer alive, how far behind the topic is it, is data landing.

:func:`observe` gathers the facts (pid file, Spark checkpoints, the broker's high watermarks);
:func:`assess` turns them into a verdict with plain values, so every rule is unit-tested. The
health task polls ``observe`` + ``assess`` while the verdict is "waiting" (a consumer just
(re)started has not committed yet) and fails the run when it ends "unhealthy".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from stockpulse.config import StackSettings
from stockpulse.orchestration import checkpoints
from stockpulse.services import processes

logger = logging.getLogger(__name__)

HEALTHY, WAITING, UNHEALTHY = "healthy", "waiting", "unhealthy"


@dataclass(frozen=True)
class Observation:
    """What the supervisor and the health check look at, gathered in one place."""

    pid: int | None
    started_at: float | None  # when the running consumer was started (pid file written)
    lag: dict[str, dict[int, int]]  # sink -> partition -> records not yet committed
    committed_at: dict[str, float | None]  # sink -> time of its latest commit
    observed_at: float = field(default_factory=time.time)

    def total_lag(self) -> int:
        """The worst sink's lag: the job is only as far as its slowest query."""
        return max((sum(parts.values()) for parts in self.lag.values()), default=0)


def observe(s: StackSettings, checkpoint_dir: Path, pid_file: Path) -> Observation:
    """Read the pid file, the checkpoints and the topic's high watermarks (real fetches)."""
    from stockpulse.kafka_offsets import describe_topic, watermarks

    from stockpulse.orchestration.supervisor import started_at

    pid = processes.read_pid(pid_file)
    progress = checkpoints.read_all(checkpoint_dir, s.kafka.topic)
    _, partitions = describe_topic(s.kafka.bootstrap_servers, s.kafka.topic)
    marks = watermarks(s.kafka.bootstrap_servers, s.kafka.topic, partitions, progress[0].committed or None)
    return Observation(
        pid=pid,
        started_at=started_at(pid_file) if pid else None,
        lag={p.sink: checkpoints.partition_lag(marks, p.committed) for p in progress},
        committed_at={p.sink: p.committed_at for p in progress},
    )


@dataclass(frozen=True)
class Verdict:
    state: str  # HEALTHY | WAITING | UNHEALTHY
    reasons: list[str]


def assess(obs: Observation, mode: str, restarted_at: float | None, stall_after: float) -> Verdict:
    """The verdict on one observation.

    ``restarted_at`` is when this run started the consumer (None if it found it running): a
    freshly started job must commit a batch after that moment before it counts as healthy, so
    "started" is never mistaken for "working". In catch-up mode the job is not meant to keep
    running; the catch-up task itself failed if the job did.
    """
    if mode == "catch_up":
        return Verdict(HEALTHY, [f"catch-up finished; {obs.total_lag()} records arrived since"])
    if obs.pid is None:
        return Verdict(UNHEALTHY, ["consumer is not running (it exited after the supervisor's start attempt)"])
    reasons, waiting, stalled = [], False, False
    for sink, parts in obs.lag.items():
        lag, committed = sum(parts.values()), obs.committed_at.get(sink)
        if lag == 0:
            continue
        if restarted_at is not None:
            if committed is None or committed < restarted_at:
                waiting = True
                reasons.append(f"{sink}: {lag} records wait; no batch committed in the "
                               f"{obs.observed_at - restarted_at:.0f} s since the (re)start")
            continue
        moments = [t for t in (committed, obs.started_at) if t is not None]
        age = obs.observed_at - max(moments) if moments else None
        if age is not None and age > stall_after:
            stalled = True
            reasons.append(f"{sink}: stalled: {lag} records wait and nothing was committed for {age:.0f} s")
    if stalled:
        return Verdict(UNHEALTHY, reasons)
    return Verdict(WAITING if waiting else HEALTHY, reasons)


def freshness(url: str, since) -> tuple[float | None, int]:
    """(seconds since the last row landed in ticks_raw, rows landed after ``since``)."""
    from stockpulse.db import connect

    with connect(url) as conn:
        age, rows = conn.execute(
            "SELECT extract(epoch FROM now() - max(landed_at))::float8, "
            "count(*) FILTER (WHERE %(since)s::timestamptz IS NULL OR landed_at > %(since)s::timestamptz) "
            "FROM ticks_raw", {"since": since},
        ).fetchone()
    return age, rows
