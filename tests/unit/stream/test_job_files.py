"""The consumer's job lock and heartbeat: a second job on the same checkpoints refuses to start
before it touches the lake, and the heartbeat says which queries ran a trigger, for which pid."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from stockpulse.config import PROJECT_ROOT
from stockpulse.stream.job_files import Heartbeat, JobFiles, read_heartbeat
from stockpulse import locks
from stockpulse.ops.services import processes


def test_a_second_job_on_the_same_checkpoints_refuses_before_tidying_the_lake(tmp_path):
    chk, lake, state = tmp_path / "chk", tmp_path / "lake", tmp_path / "state"
    # What remove_uncommitted would delete: a part file no committed batch names.
    (lake / "_spark_metadata").mkdir(parents=True)
    (lake / "_spark_metadata" / "0").write_text("v1\n")
    stray = lake / "part-00000-running-batch.c000.snappy.parquet"
    stray.write_bytes(b"the running job is writing this")
    files = JobFiles.of(str(chk), state)
    holder = locks.try_lock(files.lock)  # the running job
    assert holder is not None
    try:
        env = {**os.environ, "CHECKPOINT_DIR": str(chk), "LAKE_PATH": str(lake), "STOCKPULSE_STATE_DIR": str(state),
               "DATABASE_URL": f"postgresql://u@127.0.0.1:{processes.free_port()}/db",
               "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{processes.free_port()}"}
        result = subprocess.run([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"consumer: error: another consumer already runs on the checkpoints in {chk} (it holds {files.lock}); "
        "stop it first ('make down'), or let it be"]
    assert stray.exists(), "the lake was tidied under a running job"


def test_the_heartbeat_names_each_query_and_its_latest_trigger(tmp_path):
    path = tmp_path / "hb.json"
    heartbeat = Heartbeat(path, pid=4242)
    assert read_heartbeat(path, 4242) == {}  # written at start: no queries yet
    heartbeat.expect([SimpleNamespace(id="id-p", name="ticks_to_parquet"),
                      SimpleNamespace(id="id-g", name="ticks_to_postgres")])
    heartbeat.beat("id-p")
    beats = read_heartbeat(path, 4242)
    assert beats["ticks_to_postgres"] is None and beats["ticks_to_parquet"] > 0
    assert read_heartbeat(path, 1) is None  # another run's file proves nothing about this one
    assert read_heartbeat(tmp_path / "missing.json", 4242) is None


def test_a_failed_query_is_summed_up_by_the_error_our_code_raised():
    from stockpulse.stream.cli import failure_summary

    spark_message = (
        "[PYTHON_EXCEPTION] An exception was thrown from the Python worker: Traceback (most recent call last):\n"
        '  File "/x/pyspark/worker.py", line 10, in main\n    process()\n'
        "stockpulse.stream.kafka_source.KafkaSourceError: topic t was deleted and created again. Set FAIL_ON_DATA_LOSS=false\n"
        "\tat org.apache.spark.api.python.BasePythonRunner(PythonRunner.scala:1)\n"
    )
    assert failure_summary(spark_message) == (
        "KafkaSourceError: topic t was deleted and created again. Set FAIL_ON_DATA_LOSS=false")
    assert failure_summary("[STREAM_FAILED] something broke\n\tat org.apache.X") == "[STREAM_FAILED] something broke"
    assert failure_summary("") == "unknown error"


def test_a_running_job_detaches_its_listener_then_stops_each_query_within_the_budget():
    from stockpulse.stream.cli import RunningJob

    calls = []
    streams = SimpleNamespace(removeListener=lambda listener: calls.append(("detach", listener)))
    conf = SimpleNamespace(set=lambda key, value: calls.append(("conf", key, value)))
    busy = {"parquet": [True, True, False], "postgres": [True, False]}  # isTriggerActive, poll by poll

    class Query:
        def __init__(self, name):
            self.name, self.isActive = name, True

        @property
        def status(self):
            flags = busy[self.name]
            return {"isTriggerActive": flags.pop(0) if len(flags) > 1 else flags[0]}

        def stop(self):
            calls.append(("stop", self.name, busy[self.name]))

    running = RunningJob()
    running.stop(5)  # before the session exists: nothing to do
    assert calls == []
    bus = SimpleNamespace(waitUntilEmpty=lambda ms: calls.append(("listener bus emptied", ms)))
    context = SimpleNamespace(_jsc=SimpleNamespace(sc=lambda: SimpleNamespace(listenerBus=lambda: bus)))
    running.spark = SimpleNamespace(streams=streams, conf=conf, sparkContext=context)
    running.listener = "heartbeat"
    running.queries = [Query("parquet"), Query("postgres")]
    streams.active = running.queries  # Spark's list of the session's running queries
    running.stop(10, poll_seconds=0)
    assert calls == [("detach", "heartbeat"), ("conf", "spark.sql.streaming.stopTimeout", "2000"),
                     ("stop", "parquet", [False]), ("stop", "postgres", [False]),  # stopped once both idled
                     ("listener bus emptied", 2000)]  # the event the listener was handling, finished
    calls.clear()
    busy.update(parquet=[True], postgres=[True])  # back to back batches: stopped anyway, in budget
    running.stop(0.2, poll_seconds=0.01)
    assert [c[:2] for c in calls] == [("conf", "spark.sql.streaming.stopTimeout"), ("stop", "parquet"),
                                      ("stop", "postgres"), ("listener bus emptied", 40)]
    calls.clear()
    running.queries[0].stop = lambda: (_ for _ in ()).throw(TimeoutError("Stream Execution thread failed to stop"))
    running.stop(0.2, poll_seconds=0.01)  # one that times out does not keep the other running
    assert [c[:2] for c in calls] == [("conf", "spark.sql.streaming.stopTimeout"), ("stop", "postgres"),
                                      ("listener bus emptied", 40)]
    running.detach()  # the normal end detaches again: once was enough
    assert [c for c in calls if c[0] == "detach"] == []


def test_a_running_job_stops_what_spark_runs_even_a_query_it_has_not_named_yet():
    """A query being started again after its first batch is in Spark's list before the job's."""
    from stockpulse.stream.cli import RunningJob

    class Query:
        def __init__(self, name, active=True):
            self.name, self.isActive, self.stopped = name, active, False
            self.status = {"isTriggerActive": False}

        def stop(self):
            self.stopped = True

    named, unnamed = Query("parquet"), Query("postgres again")
    running = RunningJob()
    running.queries = [named]
    running.spark = SimpleNamespace(streams=SimpleNamespace(active=[named, unnamed]))
    assert running.active() == [named, unnamed]

    class Gone:  # the gateway is closing: the queries this process knows, those still active
        @property
        def active(self):
            raise ConnectionError("gateway closed")

    running.spark = SimpleNamespace(streams=Gone())
    running.queries = [named, Query("stopped", active=False)]
    assert running.active() == [named]


def test_the_package_zips_of_jobs_that_are_gone_are_removed(tmp_path):
    from stockpulse.stream.cli import STAGING_LOCK, remove_orphaned_packages

    running, gone, unmarked = (tmp_path / f"stockpulse-pyfiles-{n}" for n in ("run1ng", "g0ne", "0ld"))
    for staging in (running, gone, unmarked):
        staging.mkdir()
        (staging / "stockpulse.zip").write_bytes(b"zip")
    held = locks.try_lock(running / STAGING_LOCK)  # a running job holds its lock ...
    subprocess.run([sys.executable, "-c", "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'a+'), fcntl.LOCK_EX)",
                    str(gone / STAGING_LOCK)], check=True)  # ... a gone one's died with it
    try:
        assert remove_orphaned_packages(tmp_path) == [gone]
        assert sorted(p.name for p in tmp_path.iterdir()) == [unmarked.name, running.name]  # no lock file: kept
    finally:
        held.close()
