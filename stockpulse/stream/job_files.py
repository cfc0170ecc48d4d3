"""What the running job shows the outside world: its lock and its heartbeat.

Two files beside the job's checkpoints tell the outside world (``make up``, the Airflow
supervisor) about it without trusting pid files:

- the **job lock**: the process holds an exclusive ``flock`` on it for its whole life, taken
  before it touches the lake or the checkpoints, and writes its pid into it. A second job on the
  same checkpoints refuses to start; "the consumer runs" means "the lock is held".
- the **heartbeat**: every query's latest progress or idle event (Spark reports one per trigger
  with data, and one every ``spark.sql.streaming.noDataProgressEventInterval`` while idle), so a
  supervisor can tell a job whose queries really run from a process that merely exists.

With local checkpoints both live in the checkpoint directory itself, so any two jobs on the same
checkpoints collide whatever else differs; with remote ones (``s3a://``) they live in
``<STOCKPULSE_STATE_DIR>/run``, keyed by the checkpoint location.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stockpulse.config import StatePaths, local_path
from stockpulse.errors import StockPulseError

logger = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 3.0  # a supervisor's lock probe holds the lock for an instant; ride it out


@dataclass(frozen=True)
class JobFiles:
    """Where the job's lock and heartbeat are; the supervisor computes the same paths."""

    lock: Path
    heartbeat: Path

    @classmethod
    def of(cls, checkpoint_location: str, state_dir: Path) -> "JobFiles":
        directory = local_path(checkpoint_location)
        if directory is not None:
            return cls(directory / ".stockpulse-job.lock", directory / ".stockpulse-job.heartbeat.json")
        key = hashlib.sha1(checkpoint_location.encode()).hexdigest()[:12]
        run = StatePaths(state_dir).run
        return cls(run / f"job-{key}.lock", run / f"job-{key}.heartbeat.json")


def lock_pid(lock_file: Path) -> int | None:
    """The pid the job wrote into its lock file (whether or not it still runs)."""
    try:
        return int(lock_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def hold_job_lock(lock_file: Path, checkpoint_location: str) -> IO[str]:
    """Take the job lock for the life of this process and record our pid in it; refuse when held."""
    from stockpulse.locks import acquire_lock

    try:
        handle = acquire_lock(lock_file, LOCK_WAIT_SECONDS)
    except OSError as exc:
        raise StockPulseError(f"cannot open the job lock {lock_file}: {exc.strerror or exc}") from None
    if handle is None:
        holder = lock_pid(lock_file)
        raise StockPulseError(
            f"another consumer{f' (pid {holder})' if holder else ''} already runs on the checkpoints in "
            f"{checkpoint_location} (it holds {lock_file}); stop it first ('make down'), or let it be")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Heartbeat:
    """The heartbeat file: {"pid", "queries": {id: name}, "beats": {id: epoch seconds}}.

    Rewritten atomically on every beat (events arrive on Spark's listener thread, ``expect`` on
    the main thread, hence the lock).
    """

    def __init__(self, path: Path, pid: int) -> None:
        self.path, self.pid = path, pid
        self.queries: dict[str, str] = {}
        self.beats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._write()

    def expect(self, queries) -> None:
        with self._lock:
            self.queries.update({str(q.id): q.name or str(q.id) for q in queries})
            self._write()

    def beat(self, query_id) -> None:
        with self._lock:
            self.beats[str(query_id)] = time.time()
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{self.pid}.tmp")
        temporary.write_text(json.dumps({"pid": self.pid, "queries": self.queries, "beats": self.beats}))
        os.replace(temporary, self.path)


def read_heartbeat(path: Path, pid: int | None) -> dict[str, float | None] | None:
    """{query name: its latest beat, None before the first} as written by job ``pid``; None when
    the file is missing or was written by another process (a previous run's)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if pid is None or data.get("pid") != pid:
        return None
    beats = data.get("beats", {})
    return {name: beats.get(query_id) for query_id, name in data.get("queries", {}).items()}


def heartbeat_listener(heartbeat: Heartbeat):
    """A StreamingQueryListener that beats on every progress or idle event (a trigger ran)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class HeartbeatListener(StreamingQueryListener):
        def onQueryStarted(self, event) -> None:
            pass

        def onQueryProgress(self, event) -> None:
            self._beat(event.progress.id)

        def onQueryIdle(self, event) -> None:
            self._beat(event.id)

        def onQueryTerminated(self, event) -> None:
            pass

        def _beat(self, query_id) -> None:
            try:
                heartbeat.beat(query_id)
            except OSError as exc:  # a full disk must not stop the job; the supervisor will notice
                logger.warning("could not write the heartbeat %s: %s", heartbeat.path, exc)

    return HeartbeatListener()
