"""Is the pipeline healthy: is the consumer alive, how far behind the topic is it, is data landing.

:func:`observe` gathers the facts (the job lock and pid file, the job's heartbeat, Spark
checkpoints, the broker's high watermarks); :func:`assess` turns them into a verdict with plain
values, so every rule is unit-tested. The health task polls ``observe`` + ``assess`` while the
verdict is "waiting" (a consumer just (re)started has not proved itself yet) and fails the run
when it ends "unhealthy" or still waiting. :func:`stalls` is the one stall rule: the supervisor
restarts on exactly what the health report calls stalled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from stockpulse.config import StackSettings, interval_seconds
from stockpulse.stream.job_files import read_heartbeat
from stockpulse.ops import checkpoints, supervisor

logger = logging.getLogger(__name__)

HEALTHY, WAITING, UNHEALTHY = "healthy", "waiting", "unhealthy"


@dataclass(frozen=True)
class Observation:
    """What the supervisor and the health check look at, gathered in one place."""

    pid: int | None
    started_at: float | None  # when the running consumer was started
    lag: dict[str, dict[int, int]]  # sink -> partition -> records not yet committed
    committed_at: dict[str, float | None]  # sink -> time of its latest commit
    observed_at: float = field(default_factory=time.time)
    # query name -> its latest progress/idle event (None: none yet), as the running job wrote it;
    # None when the running job wrote no heartbeat (yet)
    heartbeat: dict[str, float | None] | None = None
    triggers: dict[str, float] = field(default_factory=dict)  # sink -> its query's trigger interval, seconds

    def total_lag(self) -> int:
        """The worst sink's lag: the job is only as far as its slowest query."""
        return max((sum(parts.values()) for parts in self.lag.values()), default=0)


def observe(s: StackSettings, checkpoint_dir: Path, paths: supervisor.ConsumerPaths) -> Observation:
    """Read the job lock, pid file, heartbeat, checkpoints and the topic's high watermarks."""
    from stockpulse.kafka_offsets import describe_topic, watermarks

    pid = supervisor.running_consumer(paths)
    progress = checkpoints.read_all(checkpoint_dir, s.kafka.topic)
    _, partitions = describe_topic(s.kafka.bootstrap_servers, s.kafka.topic)
    marks = watermarks(s.kafka.bootstrap_servers, s.kafka.topic, partitions)
    return Observation(
        pid=pid,
        started_at=supervisor.started_at(paths) if pid else None,
        lag={p.sink: checkpoints.partition_lag(marks, p.committed) for p in progress},
        committed_at={p.sink: p.committed_at for p in progress},
        heartbeat=read_heartbeat(paths.job.heartbeat, pid),
        triggers={p.sink: interval_seconds(s.consumer.trigger_of(p.sink)) for p in progress},
    )


@dataclass(frozen=True)
class Stall:
    """A sink with records waiting whose own query has committed nothing for too long."""

    sink: str
    lag: int
    age: float
    threshold: float

    def __str__(self) -> str:
        return (f"{self.sink}: committed nothing for {self.age:.0f} s (threshold {self.threshold:.0f} s) "
                f"while {self.lag} records wait")


STALL_TRIGGERS = 3
"""A sink is given at least this many of its own trigger intervals to commit: a lake on a
10-minute trigger (LAKE_TRIGGER_INTERVAL) is quiet for minutes by design, and restarting it for
that would only repeat its work."""


def stall_threshold(obs: Observation, sink: str, stall_after: float) -> float:
    """How long ``sink`` may go without a commit: ``stall_after``, or more for a slow trigger."""
    return max(stall_after, STALL_TRIGGERS * obs.triggers.get(sink, 0.0))


def stalls(obs: Observation, stall_after: float) -> list[Stall]:
    """Every lagging sink whose own latest commit (or the job's start, if later) is older than its
    :func:`stall_threshold`. Each sink is its own query: one that keeps committing says nothing
    about the other. A sink with nothing to read makes no batches, so its silence is no stall."""
    found = []
    for sink, parts in obs.lag.items():
        lag = sum(parts.values())
        moments = [t for t in (obs.committed_at.get(sink), obs.started_at) if t is not None]
        threshold = stall_threshold(obs, sink, stall_after)
        if lag > 0 and moments and obs.observed_at - max(moments) > threshold:
            found.append(Stall(sink, lag, obs.observed_at - max(moments), threshold))
    return found


@dataclass(frozen=True)
class Verdict:
    state: str  # HEALTHY | WAITING | UNHEALTHY
    reasons: list[str]


def assess(obs: Observation, mode: str, restarted_at: float | None, stall_after: float) -> Verdict:
    """The verdict on one observation.

    ``restarted_at`` is when this run started the consumer (None if it found it running). A
    freshly started job must prove it works before it counts as healthy, so "started" is never
    mistaken for "working": every query must report a trigger (progress, or idle on an empty
    topic) after that moment, and every sink with records waiting must commit a batch after it.
    In catch-up mode the job is not meant to keep running; the catch-up task itself failed if
    the job did.
    """
    if mode == "catch_up":
        return Verdict(HEALTHY, [f"catch-up finished; {obs.total_lag()} records arrived since"])
    if obs.pid is None:
        return Verdict(UNHEALTHY, ["consumer is not running (it exited after the supervisor's start attempt)"])
    if restarted_at is None:
        found = stalls(obs, stall_after)
        return Verdict(UNHEALTHY, [f"stalled: {stall}" for stall in found]) if found else Verdict(HEALTHY, [])
    since = obs.observed_at - restarted_at
    reasons = []
    beats = obs.heartbeat or {}
    silent = [name for name, beat in beats.items() if beat is None or beat < restarted_at]
    if not beats or silent:
        reasons.append(f"consumer (pid {obs.pid}): no heartbeat from {', '.join(silent) or 'its queries'} in the "
                       f"{since:.0f} s since the (re)start: Spark has not run a trigger yet")
    for sink, parts in obs.lag.items():
        lag, committed = sum(parts.values()), obs.committed_at.get(sink)
        if lag > 0 and (committed is None or committed < restarted_at):
            reasons.append(f"{sink}: {lag} records wait; no batch committed in the {since:.0f} s since the (re)start")
    return Verdict(WAITING if reasons else HEALTHY, reasons)


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
