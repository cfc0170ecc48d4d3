"""The JVM class archive against a real JVM: what it writes, what a cut-short archive does, and
the archive a streaming job stopped by SIGTERM leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.stream.class_archive import ArchivePlan, java_binary, maps, promote
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, postgres_counts, produced_rows


def settled(checkpoints: Path) -> bool:
    """Both queries committed every batch they planned: a SIGTERM now meets no batch in flight
    (rows reach PostgreSQL before their batch's ``foreachBatch`` returns)."""
    from stockpulse.ops.checkpoints import batch_ids

    for sink in ("parquet", "postgres"):
        planned, committed = batch_ids(checkpoints / sink / "offsets"), batch_ids(checkpoints / sink / "commits")
        if not planned or max(planned) not in committed:
            return False
    return True

JAVA = java_binary()
pytestmark = pytest.mark.skipif(JAVA is None, reason="no java on PATH")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """An archive a real JVM wrote at exit, under its temporary name."""
    directory = tmp_path_factory.mktemp("cds")
    archive = ArchivePlan(directory / "k.jsa", directory / "k.jsa.1.partial")
    result = subprocess.run([str(JAVA), *archive.java_options, "-version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and archive.training.stat().st_size > 0, result.stderr
    assert "[warning]" not in result.stdout  # the writer's notes on classes it leaves out stay quiet
    return archive


def test_a_truncated_archive_kills_the_jvm_so_it_is_never_promoted(written, tmp_path):
    cut = tmp_path / "cut.jsa"
    cut.write_bytes(written.training.read_bytes()[: written.training.stat().st_size // 2])
    crashed = subprocess.run([str(JAVA), f"-XX:SharedArchiveFile={cut}", "-version"], capture_output=True,
                             timeout=120, cwd=tmp_path)  # its crash report lands in tmp_path
    assert crashed.returncode != 0  # SIGBUS: why only a checked archive gets the name JVMs map
    assert not maps(JAVA, cut)
    assert not promote(ArchivePlan(tmp_path / "k.jsa", cut), JAVA, 0) and not (tmp_path / "k.jsa").exists()


def test_a_whole_archive_is_promoted_and_mapped(written):
    assert promote(written, JAVA, 0)
    used = subprocess.run([str(JAVA), *ArchivePlan(written.path).java_options, "-Xshare:on", "-version"],
                          capture_output=True, text=True, timeout=120)
    assert used.returncode == 0 and "sharing" in used.stderr, used.stderr  # -Xshare:on fails unless it maps


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies left to an init that never reaps
    them do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


@pytest.mark.slow
def test_a_streaming_job_stopped_by_sigterm_stops_cleanly_and_leaves_no_torn_archive(pipeline_env, tmp_path):
    """``make down`` SIGTERMs the job's process group: the job stops its queries, lets its JVM (which
    ignores SIGTERM) exit and write the archive, checks it and exits 143. A JVM still writing when
    the budget runs out (a loaded machine) is stopped and its file removed: either way nothing of
    the job outlives it, and no archive but a whole one is left."""
    csv = csv_slice(tmp_path / "slice.csv", 100)
    producer = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], pipeline_env)
    sent = produced_rows(producer.stderr)
    archives = tmp_path / "class-archives"
    env = {**pipeline_env, "JVM_CLASS_ARCHIVE_DIR": str(archives), "LAKE_PARTITION_BY": "index"}
    log = tmp_path / "consumer.log"
    with log.open("ab") as out:
        job = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while postgres_counts(env["DATABASE_URL"])["rows"] < sent or not settled(Path(env["CHECKPOINT_DIR"])):
            assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        os.killpg(job.pid, signal.SIGTERM)
        assert job.wait(120) == 143, log.read_text()[-3000:]
        assert not group_alive(job.pid), log.read_text()[-3000:]  # no JVM left writing a file nobody checks
    finally:
        if group_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert not list(archives.glob("*.partial"))
    whole = list(archives.glob("*.jsa"))
    if "wrote the JVM class archive" in text:
        assert len(whole) == 1 and maps(JAVA, whole[0])
    else:  # past the budget on a loaded machine: given up, said so, nothing left
        assert "the JVM was still writing its class archive" in text and not whole, text[-3000:]
    assert postgres_counts(env["DATABASE_URL"])["rows"] == sent


@pytest.mark.slow
def test_a_job_that_fails_leaves_no_archive_behind(pipeline_env, tmp_path):
    """A job refused after its JVM started stops the JVM instead of letting it write ~190 MB that
    nobody checks (and hold the caller's output open meanwhile)."""
    archives = tmp_path / "class-archives"
    env = {**pipeline_env, "JVM_CLASS_ARCHIVE_DIR": str(archives), "STARTING_OFFSETS": '{"not": json'}
    result = run_cli(["consumer/consumer.py", "--once"], env)
    assert result.returncode == 1 and "consumer: error: query failed" in result.stderr, result.stderr[-3000:]
    assert "no JVM class archive for this JDK" in result.stderr  # the JVM did start, to write one
    assert list(archives.iterdir()) == []
