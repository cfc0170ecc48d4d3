"""The consumer's job lock (``hold_job_lock``, ``lock_pid``, ``JobFiles.of``) and the ``flock``
helpers under it (``stockpulse.locks``), with real processes holding real locks.

What is proved: a second job on the same checkpoints is refused with one line naming the running
job's pid, and the refusal leaves that pid in the file; the lock needs no cleaning up after a
crash: it is free the moment its holder dies, even by SIGKILL and even when the holder's own
children live on (so a pid file's stale content never blocks a restart); a lock that cannot be
opened is one clear line too. Where the lock lives: beside local checkpoints (whatever the
spelling of their location), under ``<state_dir>/run`` keyed by location for remote ones.

tests/unit/stream/test_job_files.py already proves a second consumer *process* refuses before it
tidies the lake, with a holder that wrote no pid; tests/unit/ops/test_supervisor.py proves
``ConsumerPaths`` puts the job lock beside local checkpoints and gives two remote locations two
locks. Neither is repeated here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stockpulse import locks
from stockpulse.config import PROJECT_ROOT, ConsumerSettings
from stockpulse.errors import StockPulseError
from stockpulse.ops.services import processes
from stockpulse.stream import job_files
from stockpulse.stream.job_files import JobFiles, hold_job_lock, lock_pid

HOLDER = textwrap.dedent(f"""
    import subprocess, sys, time
    from pathlib import Path
    sys.path.insert(0, {str(PROJECT_ROOT)!r})
    from stockpulse.stream.job_files import hold_job_lock
    handle = hold_job_lock(Path(sys.argv[1]), "the test's checkpoints")
    child = subprocess.Popen(["sleep", "300"]) if "--with-child" in sys.argv else None
    print("locked", child.pid if child else "", flush=True)
    time.sleep(300)
""")


@pytest.fixture
def holder(tmp_path):
    """Start a process that takes the job lock on a path, as the consumer does; returns
    (process, pid of its own child or None). Everything started is killed afterwards."""
    started: list[subprocess.Popen] = []
    orphans: list[int] = []

    def start(lock_file: Path, with_child: bool = False) -> tuple[subprocess.Popen, int | None]:
        script = tmp_path / "holder.py"
        script.write_text(HOLDER)
        proc = subprocess.Popen([sys.executable, str(script), str(lock_file), *(["--with-child"] if with_child else [])],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        word, *child = proc.stdout.readline().split()
        assert word == "locked", "the holder did not take the lock"
        child_pid = int(child[0]) if child else None
        if child_pid:
            orphans.append(child_pid)
        return proc, child_pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    for pid in orphans:  # the holder's own child (started by a process this test started)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def short_wait(monkeypatch):
    """hold_job_lock rides out a supervisor's probe for LOCK_WAIT_SECONDS; no need to here."""
    monkeypatch.setattr(job_files, "LOCK_WAIT_SECONDS", 0.2)


def test_a_second_holder_is_refused_in_one_line_naming_the_holders_pid(tmp_path, holder, short_wait):
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    proc, _ = holder(lock)
    with pytest.raises(StockPulseError) as caught:
        hold_job_lock(lock, str(tmp_path / "chk"))
    assert str(caught.value) == (
        f"another consumer (pid {proc.pid}) already runs on the checkpoints in {tmp_path / 'chk'} "
        f"(it holds {lock}); stop it first ('make down'), or let it be")
    assert lock_pid(lock) == proc.pid, "the refused job overwrote the running job's pid"


def test_the_lock_is_free_once_its_holder_is_killed_with_sigkill(tmp_path, holder):
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    proc, _ = holder(lock)
    assert locks.lock_held(lock)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_pid(lock) == proc.pid  # the dead job's pid is still in the file ...
    assert not locks.lock_held(lock)   # ... but nothing holds the lock, so nothing is stale
    handle = hold_job_lock(lock, str(tmp_path / "chk"))
    try:
        assert lock.read_text() == f"{os.getpid()}\n"  # the old pid is replaced, not appended to
    finally:
        handle.close()


def test_the_lock_dies_with_its_holder_even_when_the_holders_children_live_on(tmp_path, holder):
    """The job starts children with subprocess (Spark's JVM). If they inherited the locked file,
    a SIGKILLed job would leave the lock held by an orphan and no job could start again."""
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    proc, child = holder(lock, with_child=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert processes.alive(child), "the holder's child should have outlived it for this test"
    assert not locks.lock_held(lock)
    hold_job_lock(lock, "chk").close()


def test_closing_the_handle_releases_the_lock(tmp_path, short_wait):
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    handle = hold_job_lock(lock, "chk")
    with pytest.raises(StockPulseError, match=rf"another consumer \(pid {os.getpid()}\)"):
        hold_job_lock(lock, "chk")  # a second open file: flock conflicts even within one process
    handle.close()
    assert not locks.lock_held(lock)
    hold_job_lock(lock, "chk").close()


def test_a_lock_that_cannot_be_opened_is_one_clear_line(tmp_path):
    (tmp_path / "chk").write_text("a file where the checkpoint directory should be")
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    with pytest.raises(StockPulseError) as caught:
        hold_job_lock(lock, str(tmp_path / "chk"))
    assert str(caught.value).startswith(f"cannot open the job lock {lock}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", ["", "not a pid\n", "\n\n"])
def test_a_lock_file_without_a_pid_names_no_holder(tmp_path, content):
    lock = tmp_path / "job.lock"
    lock.write_text(content)
    assert lock_pid(lock) is None
    assert lock_pid(tmp_path / "missing.lock") is None


def test_probing_a_missing_lock_creates_nothing(tmp_path):
    """The supervisor probes before any job ever ran: the probe must not leave a file behind."""
    lock = tmp_path / "chk" / ".stockpulse-job.lock"
    assert not locks.lock_held(lock)
    assert not lock.exists()


def test_waiting_for_a_held_lock_gives_up_with_none(tmp_path, holder):
    lock = tmp_path / "x.lock"
    holder(lock)
    assert locks.try_lock(lock) is None
    assert locks.acquire_lock(lock, timeout=0.3, interval=0.1) is None


# -- where the lock lives --------------------------------------------------------------------

def test_local_checkpoints_keep_the_lock_and_heartbeat_beside_them(tmp_path):
    chk, state = tmp_path / "chk", tmp_path / "state"
    files = JobFiles.of(str(chk), state)
    assert files.lock.parent == chk and files.heartbeat.parent == chk
    assert files.lock != files.heartbeat
    assert JobFiles.of(f"file://{chk}", state) == files  # the same directory spelt as a URI
    assert JobFiles.of(str(chk), tmp_path / "another_state") == files  # the state dir plays no part


def test_remote_checkpoints_keep_their_files_under_the_state_dir_keyed_by_location(tmp_path):
    state = tmp_path / "state"
    one = JobFiles.of("s3a://bucket/chk", state)
    other = JobFiles.of("s3a://bucket/chk2", state)
    assert one.lock.parent == one.heartbeat.parent == state / "run"
    assert one.lock != other.lock and one.heartbeat != other.heartbeat
    assert one == JobFiles.of("s3a://bucket/chk", state)  # a second job on the same location collides
    assert one.lock.stem == one.heartbeat.name.split(".")[0]  # the lock and heartbeat of one job pair up


def test_a_trailing_slash_does_not_make_a_second_remote_lock(tmp_path):
    """``CHECKPOINT_DIR=s3a://b/chk/`` and ``s3a://b/chk`` are the same checkpoints: the settings
    normalise the location before it is hashed, so two jobs cannot both take "their" lock."""
    def lock(location: str) -> Path:
        return JobFiles.of(ConsumerSettings.from_env({"CHECKPOINT_DIR": location}).checkpoint_dir, tmp_path).lock

    assert lock("s3a://bucket/chk/") == lock("s3a://bucket/chk")
