"""Compaction of a lake the real streaming job wrote: exact for every reader before, during and
after, with the job still running; and a compaction killed with SIGKILL at each stage, rerun."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from stockpulse.config import PROJECT_ROOT, LakehouseSettings
from stockpulse.lakehouse import lake_view
from stockpulse.lakehouse.compaction import LOG_DIR, PAUSE_VARIABLE
from tests.conftest import run_cli
from tests.integration.helpers import SHIPPED_CSV, produced_rows

pytestmark = pytest.mark.slow

INDEXES = ("HSI", "NYA", "000001.SS")


def history(path: Path, years: tuple[str, ...]) -> Path:
    """The shipped rows of three indexes in ``years``, as the producer's CSV."""
    with SHIPPED_CSV.open(newline="") as source, path.open("w", newline="") as target:
        reader = csv.reader(source)
        writer = csv.writer(target)
        writer.writerow(next(reader))
        writer.writerows(row for row in reader if row[0] in INDEXES and row[1][:4] in years)
    return path


def produce(env: dict[str, str], path: Path) -> int:
    result = run_cli(["producer/producer.py", "--csv", str(path), "--tick-interval", "0", "--no-progress"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    return produced_rows(result.stderr)


def compact(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = run_cli(["-m", "stockpulse.lakehouse.compaction", *args], env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def view_keys(settings: LakehouseSettings, env) -> list[tuple]:
    table = lake_view.read_arrow(settings, env)
    return list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))


def lake_rows(settings: LakehouseSettings, env) -> int:
    """Rows in the whole lake, through DuckDB (the cheaper reader, for waiting)."""
    return duckdb_count(lake_view.duckdb_sql(settings, env))[0]


def duckdb_count(sql: str) -> tuple[int, int]:
    with duckdb.connect() as conn:
        return conn.execute(f"SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM ({sql})").fetchone()


def compacted_glob(settings: LakehouseSettings) -> tuple[int, int]:
    """What a reader that only lists the compacted zone's directories sees (dbt does this)."""
    files = list(Path(settings.compacted_path).rglob("*.parquet"))
    if not files:
        return 0, 0
    return duckdb_count(f"SELECT * FROM read_parquet('{settings.compacted_path}/*/*/*.parquet', hive_partitioning = true)")


def raw_part_files(settings: LakehouseSettings, year: str | None = None) -> list[Path]:
    pattern = f"index=*/date={year}-*/part-*" if year else "index=*/date=*/part-*"
    return list(Path(settings.raw_path).glob(pattern))


def rows_in_years(path: Path, years: tuple[str, ...]) -> int:
    with path.open(newline="") as f:
        return sum(1 for row in csv.reader(f) if row[1][:4] in years)


@contextmanager
def readers_throughout(settings: LakehouseSettings, env):
    """Read the whole lake (pyarrow and DuckDB) in a loop until the block ends; yields the
    (rows, distinct keys) each read saw. A reader's exception fails the test."""
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read():
        try:
            while not done.is_set():
                keys = view_keys(settings, env)
                seen.append((len(keys), len(set(keys))))
                seen.append(duckdb_count(lake_view.duckdb_sql(settings, env)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        yield seen
    finally:
        done.set()
        reader.join(120)
    assert not reader.is_alive(), "a reader hung"
    if errors:
        raise errors[0]


@pytest.fixture
def lake_env(pipeline_env, tmp_path):
    env = {**pipeline_env, "LAKE_COMPACTED_PATH": str(tmp_path / "compacted"), "LAKE_PARTITION_BY": "index,date",
           "MAX_OFFSETS_PER_TRIGGER": "500"}
    return env, LakehouseSettings.from_env(env)


def test_compaction_while_the_stream_runs_keeps_every_reader_exact(lake_env, tmp_path):
    env, settings = lake_env
    first = history(tmp_path / "2008-2009.csv", ("2008", "2009"))
    sent = produce(env, first)
    log = (tmp_path / "consumer.log").open("wb")
    consumer = subprocess.Popen([sys.executable, "consumer/consumer.py"], env=env, cwd=PROJECT_ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while lake_rows(settings, env) < sent:
            assert consumer.poll() is None, f"the job stopped; log {log.name}"
            assert time.monotonic() < deadline, "the lake did not receive every tick"
            time.sleep(2)
        raw_before = len(raw_part_files(settings))
        assert raw_before >= sent // 2, "the default layout writes about a file per row during a replay"

        # During: readers of both kinds read the lake over and over while a compaction runs.
        with readers_throughout(settings, env) as seen:
            compact(env, "--min-age", "3600", "--grace", "3600")
        assert seen and set(seen) == {(sent, sent)}, f"a reader saw a wrong count during compaction: {set(seen)}"

        year_2008 = rows_in_years(first, ("2008",))
        assert compacted_glob(settings) == (year_2008, year_2008)  # 2009 is the stream's newest year: open
        assert len(list(Path(settings.compacted_path).rglob("*.parquet"))) == len(INDEXES)
        assert raw_part_files(settings, "2008"), "inputs stay for the grace period"
        assert len(view_keys(settings, env)) == sent

        with readers_throughout(settings, env) as seen:  # and while the compacted inputs are deleted
            compact(env, "--min-age", "3600", "--grace", "0")
        assert seen and set(seen) == {(sent, sent)}, f"a reader saw a wrong count during deletion: {set(seen)}"
        assert not raw_part_files(settings, "2008")
        assert not list(Path(settings.raw_path).glob("index=*/date=2008-*")), "emptied partitions are removed"
        keys = view_keys(settings, env)
        assert len(keys) == len(set(keys)) == sent

        # After: more history arrives while the job runs, and the next compaction closes 2009.
        second = history(tmp_path / "2010.csv", ("2010",))
        total = sent + produce(env, second)
        deadline = time.monotonic() + 600
        while lake_rows(settings, env) < total:
            assert consumer.poll() is None, f"the job stopped; log {log.name}"
            assert time.monotonic() < deadline, "the lake did not receive the second replay"
            time.sleep(2)
        compact(env, "--min-age", "3600", "--grace", "0")
        assert compacted_glob(settings) == (sent, sent)
        assert not raw_part_files(settings, "2009")
        keys = view_keys(settings, env)
        assert len(keys) == len(set(keys)) == total
        assert duckdb_count(lake_view.duckdb_sql(settings, env)) == (total, total)
        assert len(raw_part_files(settings)) < raw_before
        assert consumer.poll() is None, "the job kept running through every compaction"

        checked = run_cli(["-c", SPARK_COUNT], env, timeout=300)
        assert checked.returncode == 0, checked.stderr[-3000:]
        assert checked.stdout.split()[-2:] == [str(total), str(total)]
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(60)
        log.close()


SPARK_COUNT = """
from pyspark.sql import SparkSession
from stockpulse.config import LakehouseSettings
from stockpulse.lakehouse.lake_view import spark_frame
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
frame = spark_frame(spark, LakehouseSettings.from_env())
print(frame.count(), frame.select("kafka_partition", "kafka_offset").distinct().count())
"""


def start_paused(env: dict[str, str], stage: str, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "stockpulse.lakehouse.compaction", "--min-age", "3600", "--grace", "0"],
                            env={**env, PAUSE_VARIABLE: stage}, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def kill_when_paused(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while "compaction paused at" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the compaction never reached its pause"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_a_compaction_killed_at_each_stage_is_finished_by_the_next_run(lake_env, tmp_path):
    env, settings = lake_env
    csv_path = history(tmp_path / "2008-2009.csv", ("2008", "2009"))
    sent = produce(env, csv_path)
    landed = run_cli(["consumer/consumer.py", "--once"], env)
    assert landed.returncode == 0, landed.stderr[-3000:]
    assert len(view_keys(settings, env)) == sent
    raw_2008 = len(raw_part_files(settings, "2008"))

    # Killed after writing its first file, before committing it.
    log = tmp_path / "compaction-1.log"
    kill_when_paused(start_paused(env, "written", log), log)
    log_dir = Path(settings.compacted_path) / LOG_DIR
    assert len(list(log_dir.glob("*.pending"))) == 1 and not list(log_dir.glob("*.json"))
    orphan = list(Path(settings.compacted_path).rglob("*.parquet"))
    assert len(orphan) == 1
    keys = view_keys(settings, env)
    assert len(keys) == len(set(keys)) == sent  # the uncommitted file is not part of the view
    glob_rows, glob_distinct = compacted_glob(settings)
    assert glob_rows == glob_distinct > 0  # a directory reader sees the whole file, once

    # Killed after committing everything, before deleting the inputs.
    log = tmp_path / "compaction-2.log"
    kill_when_paused(start_paused(env, "committed", log), log)
    assert not list(log_dir.glob("*.pending")) and len(list(log_dir.glob("*.json"))) == len(INDEXES)
    assert len(raw_part_files(settings, "2008")) == raw_2008
    keys = view_keys(settings, env)
    assert len(keys) == len(set(keys)) == sent

    # The rerun deletes what the commits cover; every reader still counts each row once.
    finished = compact(env, "--min-age", "3600", "--grace", "0")
    assert "raw_files_deleted=%d" % raw_2008 in finished.stderr
    assert not raw_part_files(settings, "2008")
    keys = view_keys(settings, env)
    assert len(keys) == len(set(keys)) == sent
    year_2008 = rows_in_years(csv_path, ("2008",))
    assert compacted_glob(settings) == (year_2008, year_2008)
    again = compact(env, "--min-age", "3600", "--grace", "0")
    assert "files_written=0" in again.stderr, "a second run has nothing left to do"
