"""The supervisor's decisions with plain values, its locks with real file locks, and how it tells
the consumer from a stranger with real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from stockpulse.config import PROJECT_ROOT, ConsumerSettings, StackSettings
from stockpulse.errors import ServiceError
from stockpulse.ops.health import UNHEALTHY, Observation, assess, stalls
from stockpulse.ops.supervisor import (
    NOTHING, RESTART, START, ConsumerPaths, consumer_command, consumer_lock, decide, running_consumer, stop,
)
from stockpulse.ops.services import processes

NOW = 10_000.0


def obs(lag: dict[str, int], committed_at: dict[str, float | None], started_at=NOW - 3600) -> Observation:
    return Observation(pid=42, started_at=started_at, lag={sink: {0: n} for sink, n in lag.items()},
                       committed_at=committed_at, observed_at=NOW)


def test_a_dead_consumer_is_started():
    assert decide(None, [], 0).action == START
    assert decide(None, [], 500).action == START


def test_a_silent_sink_is_a_stall_only_while_its_records_wait():
    stalled = stalls(obs({"postgres": 120}, {"postgres": NOW - 600}), 180)
    decision = decide(42, stalled, 120)
    assert decision.action == RESTART
    assert "postgres: committed nothing for 600 s (threshold 180 s) while 120 records wait" in decision.reason
    assert stalls(obs({"postgres": 0}, {"postgres": NOW - 600}), 180) == []  # nothing to read: silence is normal
    assert stalls(obs({"postgres": 120}, {"postgres": NOW - 60}), 180) == []  # working through the backlog
    assert stalls(obs({"postgres": 120}, {"postgres": None}, started_at=NOW - 60), 180) == []  # just started
    assert decide(42, [], 120).action == NOTHING


def test_one_hung_sink_is_a_stall_for_both_the_supervisor_and_the_health_report():
    """PostgreSQL's query hangs while Parquet keeps committing: the newest commit of *any* sink must
    not hide it. The supervisor restarts on exactly what the health report calls stalled."""
    o = obs({"postgres": 120, "parquet": 15}, {"postgres": NOW - 600, "parquet": NOW - 2})
    found = stalls(o, 180)
    assert [s.sink for s in found] == ["postgres"]
    assert decide(42, found, o.total_lag()).action == RESTART
    verdict = assess(o, "supervise", None, 180)
    assert verdict.state == UNHEALTHY and verdict.reasons == [f"stalled: {found[0]}"]


def test_paths_are_the_ones_make_up_uses(tmp_path):
    s = StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path / "state")})
    paths = ConsumerPaths.of(s, ConsumerSettings.from_env({"CHECKPOINT_DIR": str(tmp_path / "chk")}))
    assert paths.pid_file == tmp_path / "state" / "run" / "consumer.pid"
    assert paths.log_file == tmp_path / "state" / "logs" / "consumer.log"
    assert paths.job.lock == tmp_path / "chk" / ".stockpulse-job.lock"  # keyed by the checkpoints
    assert consumer_command()[1].endswith("consumer/consumer.py") and consumer_command(once=True)[-1] == "--once"


def test_remote_checkpoints_get_a_job_lock_per_location(tmp_path):
    s = StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path)})

    def lock(location):
        return ConsumerPaths.of(s, ConsumerSettings.from_env({"CHECKPOINT_DIR": location})).job.lock

    assert lock("s3a://bucket/chk").parent == tmp_path / "run"
    assert lock("s3a://bucket/chk") == lock("s3a://bucket/chk") != lock("s3a://bucket/other")


def test_the_supervisors_lock_admits_one_holder_at_a_time(tmp_path):
    lock = tmp_path / "run" / "consumer.lock"
    held, release = threading.Event(), threading.Event()

    def holder():
        with consumer_lock(lock):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(ServiceError, match="another supervisor holds"):
            with consumer_lock(lock, timeout=0):
                pass
    finally:
        release.set()
        thread.join()
    with consumer_lock(lock, timeout=0):
        pass


# -- real processes -----------------------------------------------------------------------------
HOLDER = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {str(PROJECT_ROOT)!r})
    from stockpulse.stream.job_files import hold_job_lock
    lock = hold_job_lock(Path(sys.argv[1]), "test")
    print("locked", flush=True)
    time.sleep(300)
""")


@pytest.fixture
def paths(tmp_path) -> ConsumerPaths:
    s = StackSettings.from_env({"STOCKPULSE_STATE_DIR": str(tmp_path / "state")})
    return ConsumerPaths.of(s, ConsumerSettings.from_env({"CHECKPOINT_DIR": str(tmp_path / "chk")}))


@pytest.fixture
def lock_holder(tmp_path, paths):
    """Start a process named ``<script>`` that takes the job lock as the consumer does (same
    process group as the tests: stopping it must not signal the group)."""
    started = []

    def start(script: str) -> subprocess.Popen:
        (tmp_path / script).write_text(HOLDER)
        proc = subprocess.Popen([sys.executable, str(tmp_path / script), str(paths.job.lock)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_consumer_started_by_hand_is_running_by_its_lock_and_stopped_alone(paths, lock_holder):
    proc = lock_holder("consumer.py")
    assert not paths.pid_file.exists()
    assert running_consumer(paths) == proc.pid
    assert stop(paths, timeout=10)  # SIGTERM to the pid alone: pytest shares its process group
    proc.wait(10)
    assert running_consumer(paths) is None


def test_a_lock_held_by_something_else_is_an_error_not_a_start(paths, lock_holder):
    proc = lock_holder("something_else.py")
    with pytest.raises(ServiceError, match=rf"held by a process that is not a StockPulse consumer.*pid {proc.pid}"):
        running_consumer(paths)


def test_a_stale_pid_file_never_kills_an_unrelated_process(paths):
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        paths.pid_file.parent.mkdir(parents=True)
        paths.pid_file.write_text(f"{stranger.pid}\n")  # the consumer died; its pid was reused
        assert running_consumer(paths) is None
        assert stop(paths, timeout=5) is False
        assert stranger.poll() is None and processes.alive(stranger.pid)
        assert not paths.pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_make_up_sees_a_consumer_started_by_hand_and_starts_no_second_one(tmp_path, paths, lock_holder, monkeypatch):
    from stockpulse.ops import stack

    monkeypatch.setenv("STOCKPULSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "chk"))
    proc = lock_holder("consumer.py")
    s = StackSettings.from_env()
    stack._start_consumer(s)
    assert not paths.pid_file.exists(), "make up started a second job"
    assert stack._consumer_running(s)
    assert stack._stop_consumer(s)
    proc.wait(10)
    assert not stack._consumer_running(s)
