"""The spine end to end with real processes: CSV -> producer -> broker -> Spark -> Parquet + Postgres."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from tests.conftest import run_cli
from tests.integration.helpers import csv_slice, lake_table, postgres_counts, produced_rows

pytestmark = pytest.mark.slow


def test_replay_lands_every_row_once_in_both_sinks(pipeline_env, tmp_path):
    csv = csv_slice(tmp_path / "slice.csv", 1200, extra_lines=("HSI,2021-06-04,1,2",))
    producer = run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], pipeline_env)
    assert producer.returncode == 0, producer.stderr
    assert "1 bad rows" in producer.stderr and f"{csv}:1202" in producer.stderr
    sent = produced_rows(producer.stderr)
    assert sent == 1200

    progress_file = tmp_path / "progress.json"
    pipeline_env["FIRST_BATCH_OFFSETS"] = "500"  # a small first batch, then the rest (the default caps at 5,000)
    consumer = run_cli(["consumer/consumer.py", "--once", "--progress-file", str(progress_file)], pipeline_env)
    assert consumer.returncode == 0, consumer.stderr[-3000:]
    assert "with the official Kafka source" in consumer.stderr  # the default: Spark's own connector
    assert "Py4J" not in consumer.stderr and "Traceback" not in consumer.stderr  # a clean --once exit
    assert "first micro-batch (at most 500 messages)" in consumer.stderr
    for name, reports in json.loads(progress_file.read_text()).items():
        with_data = [r for r in reports if r["numInputRows"] > 0]
        assert 0 < with_data[0]["numInputRows"] <= 500, name  # the first batch, capped
        assert len({r["runId"] for r in with_data}) == 2, name  # then the query started again for the rest
        assert sum(r["numInputRows"] for r in with_data) == sent, name

    counts = postgres_counts(pipeline_env["DATABASE_URL"])
    assert counts == {"rows": sent, "distinct": sent, "bad_trade_value": 0}

    lake = Path(pipeline_env["LAKE_PATH"])
    table = lake_table(lake)
    assert table.num_rows == sent
    offsets = set(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))
    assert len(offsets) == sent
    for close, volume, value in zip(table["close"].to_pylist(), table["volume"].to_pylist(),
                                    table["trade_value"].to_pylist()):
        assert value == close * Decimal(volume)
    expected = {line.split(",")[0] for line in csv.read_text().splitlines()[1:1201]}
    assert {p.name for p in lake.glob("index=*")} == {f"index={i}" for i in expected}
    assert len(expected) >= 3
    assert list(lake.glob("index=HSI/date=2021-*/*.parquet")), "expected index=<INDEX>/date=<YYYY-MM-DD>/ files"
    assert_readme_proofs_run(pipeline_env["DATABASE_URL"], lake, sent)


def readme_proofs() -> list[str]:
    """The shell commands of the README's "Proving the data landed" block, as written there."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = text.split("## Proving the data landed", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [command for command in re.split(r"\n(?=\S)", block.strip()) if command.strip()]


def assert_readme_proofs_run(url: str, lake: Path, rows: int) -> None:
    """Run them against this test's database and lake (only the addresses differ)."""
    commands = readme_proofs()
    assert len(commands) == 3
    for command in commands:
        command = (command.replace("postgresql://stockpulse@127.0.0.1:5432/stocks?passfile=.state/secrets/pgpass", url)
                   .replace("'lake/parquet'", repr(str(lake))).replace(".venv/bin/python", sys.executable))
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert "Traceback" not in result.stderr and "ERROR" not in result.stderr
    last = subprocess.run(["bash", "-c", commands[-1].replace("'lake/parquet'", repr(str(lake)))
                           .replace(".venv/bin/python", sys.executable)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert last.stdout.strip() == str(rows)


def test_the_python_reader_lands_every_row_once_and_a_second_run_changes_nothing(pipeline_env, tmp_path):
    """KAFKA_SOURCE=python, the reader for machines without the Maven registry, on the same broker."""
    csv = csv_slice(tmp_path / "slice.csv", 200)
    assert run_cli(["producer/producer.py", "--csv", str(csv), "--tick-interval", "0"], pipeline_env).returncode == 0
    # An archive directory of its own: the first run finds no class archive and writes one, the
    # second maps it (the job reads /proc/<jvm>/maps to say so).
    archives = tmp_path / "class-archives"
    pipeline_env.update({"LAKE_PARTITION_BY": "index", "KAFKA_SOURCE": "python", "JVM_CLASS_ARCHIVE_DIR": str(archives)})
    for run, archive_line in enumerate(("wrote the JVM class archive", "the JVM maps its classes from")):
        result = run_cli(["consumer/consumer.py", "--once"], pipeline_env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "with the project's Python Kafka source" in result.stderr
        assert archive_line in result.stderr, result.stderr[-3000:]
        assert "[warning][cds" not in result.stdout and "Traceback" not in result.stderr
        assert len(list(archives.glob("*.jsa"))) == 1 and not list(archives.glob("*.partial"))
    assert postgres_counts(pipeline_env["DATABASE_URL"])["rows"] == 200
    assert lake_table(Path(pipeline_env["LAKE_PATH"])).num_rows == 200


def test_the_lake_on_its_own_trigger_lags_postgres_and_catches_up_exactly(pipeline_env, tmp_path):
    """LAKE_TRIGGER_INTERVAL apart from TRIGGER_INTERVAL (the low-latency setting): PostgreSQL
    lands a second wave within its own trigger while the lake, on a long one, holds only the
    first; stopped and run again, the lake catches up with every row once."""
    import os
    import signal

    from tests.integration.stream.test_exactly_once import start_consumer, wait_until

    def produce(rows: int, name: str) -> int:
        result = run_cli(["producer/producer.py", "--csv", str(csv_slice(tmp_path / name, rows)),
                          "--tick-interval", "0", "--no-progress"], pipeline_env)
        assert result.returncode == 0, result.stderr
        return produced_rows(result.stderr)

    # A first batch of 50: the lake's query, started again after it, reads the other 50 at once
    # (a restarted query triggers as it starts), and only then waits its ten minutes.
    env = {**pipeline_env, "TRIGGER_INTERVAL": "1 second", "LAKE_TRIGGER_INTERVAL": "10 minutes",
           "LAKE_PARTITION_BY": "index", "FIRST_BATCH_OFFSETS": "50"}
    url, lake, log = env["DATABASE_URL"], Path(env["LAKE_PATH"]), tmp_path / "consumer.log"
    first = produce(100, "first.csv")
    consumer = start_consumer(env, log)
    try:
        def lake_rows() -> int:
            table = lake_table(lake)
            return 0 if table is None else table.num_rows

        wait_until(lambda: postgres_counts(url)["rows"] == first and lake_rows() == first, 300,
                   "the first wave in both sinks", consumer)
        second = produce(300, "second.csv")  # the first 100 rows again, as new records, and 200 more
        wait_until(lambda: postgres_counts(url)["rows"] == first + second, 120, "the second wave in PostgreSQL",
                   consumer)
        assert lake_rows() == first, "the lake's next trigger is minutes away"
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(150)  # a first job on a fresh jar cache writes the class archive as it stops
    finally:
        if consumer.poll() is None:
            os.killpg(consumer.pid, signal.SIGKILL)
    assert "(the lake every 10 minutes)" in log.read_text()
    restarted = run_cli(["consumer/consumer.py", "--once"], env)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    table = lake_table(lake)
    keys = set(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))
    assert table.num_rows == len(keys) == first + second
    assert postgres_counts(url) == {"rows": first + second, "distinct": first + second, "bad_trade_value": 0}
