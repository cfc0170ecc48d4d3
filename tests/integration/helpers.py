"""Shared steps of the pipeline tests: slices of the shipped CSV, reading both sinks."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from stockpulse.config import PROJECT_ROOT
from stockpulse.db import connect
from stockpulse.kafka_offsets import describe_topic, watermarks

SHIPPED_CSV = PROJECT_ROOT / "data" / "indexProcessed.csv"


def csv_slice(path: Path, rows: int, extra_lines: tuple[str, ...] = ()) -> Path:
    """The header and the last ``rows`` rows of the shipped CSV (all five indices trade there)."""
    lines = SHIPPED_CSV.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[-rows:], *extra_lines]) + "\n")
    return path


def produced_rows(summary: str) -> int:
    match = re.search(r"\((\d+) rows\)", summary)
    assert match, f"no summary line in producer output: {summary!r}"
    return int(match.group(1))


def records_in_topic(broker: str, topic: str) -> int:
    """Records the topic holds now, summed over its partitions."""
    _, partitions = describe_topic(broker, topic)
    return sum(high - low for low, high in watermarks(broker, topic, partitions).values())


def start_slow_producer(csv: Path, env: dict[str, str], capture: bool = False,
                        tick_interval: float = 0.01) -> subprocess.Popen:
    """The producer as a real process, 100 ticks/s by default: slow enough to be stopped mid-replay."""
    sink = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "producer/producer.py", "--csv", str(csv), "--tick-interval", str(tick_interval), "--no-progress"],
        env=env, cwd=PROJECT_ROOT, stdout=sink, stderr=sink, text=True,
    )


def wait_for_records(broker: str, topic: str, at_least: int, producer: subprocess.Popen, timeout: float = 120) -> None:
    """Block until the topic holds ``at_least`` records, while ``producer`` is still sending."""
    deadline = time.monotonic() + timeout
    while records_in_topic(broker, topic) < at_least:
        assert producer.poll() is None, "the producer finished before it could be stopped"
        assert time.monotonic() < deadline, f"fewer than {at_least} records within {timeout:.0f} s"
        time.sleep(0.1)


def postgres_counts(url: str) -> dict[str, int]:
    with connect(url) as conn:
        total, distinct, bad_value = conn.execute(
            "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)), "
            "count(*) FILTER (WHERE trade_value <> close * volume) FROM ticks_raw"
        ).fetchone()
    return {"rows": total, "distinct": distinct, "bad_trade_value": bad_value}


def lake_table(lake: Path):
    import pyarrow.dataset as ds

    if not lake.exists():
        return None
    return ds.dataset(str(lake), format="parquet", partitioning="hive",
                      exclude_invalid_files=True, ignore_prefixes=["_", "."]).to_table()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def consumer_ready(env: dict[str, str], pid: int) -> bool:
    """Both queries of job ``pid`` ran a trigger (its heartbeat says so)."""
    from stockpulse.stream.job_files import JobFiles, read_heartbeat

    beats = read_heartbeat(JobFiles.of(env["CHECKPOINT_DIR"], Path(env["STOCKPULSE_STATE_DIR"])).heartbeat, pid)
    return bool(beats) and all(beat is not None for beat in beats.values())


def listening_addresses(pid: int) -> set[str]:
    """Addresses that ``pid`` and its children listen on (TCP; IPv4-mapped IPv6 read as IPv4)."""
    import psutil

    root = psutil.Process(pid)
    pids = {pid, *(child.pid for child in root.children(recursive=True))}
    return {c.laddr.ip.removeprefix("::ffff:") for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}
