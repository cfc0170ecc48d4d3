"""Where a message's time goes in the streaming job: CPU per process, JVM samples per stage, the
Python driver's samples, and Spark's own per-phase durations, from one ``consumer.py --once`` run.

Usage: python bench/profile_pipeline.py [--ticks 60000] [--batch-rows 100000] [--env K=V ...]

Private services as in ``bench_pipeline.py`` (an embedded PostgreSQL and Kafka node on free ports).
Three sources, one run:
- **CPU per process** (``/proc/<pid>/stat``): the Spark JVM, the Python driver, PostgreSQL's
  processes and the broker, before and after the run. On two cores this says who spends them;
- **JVM samples** from Java Flight Recorder (built into the JDK, ``JAVA_TOOL_OPTIONS``): each
  running-thread sample is put in the stage its innermost recognisable frame belongs to (Kafka
  read, JSON parse, Parquet write, Arrow transfer, ...);
- **Python samples** from py-spy on the driver, where ``foreachBatch`` runs: collect to Arrow, CSV
  encoding, COPY (waiting on PostgreSQL counts as idle and is not sampled);
- **Spark's progress reports**: per query, the sum of each phase (``addBatch`` is the write,
  ``queryPlanning``/``walCommit``/``commitOffsets`` the per-batch overhead).

The result is JSON under ``bench/results/profile-<UTC time>.json`` (and ``profile-latest.json``);
``docs/performance.md`` reads it. A profile is not a benchmark: sampling costs a few percent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procstats import cpu_seconds, descendants, kind_of  # noqa: E402
from bench_pipeline import PARTITIONS, count_lake_rows, count_rows, fresh_database, job_env, private_services, \
    produce, versions, write_results  # noqa: E402

from stockpulse import logs  # noqa: E402
from stockpulse.ops.services.broker import ensure_topic  # noqa: E402
from stockpulse.ops.services.postgres import EmbeddedPostgres  # noqa: E402
from stockpulse.ops.services.processes import read_pid  # noqa: E402

logger = logging.getLogger("profile")

# Innermost frame first: the first stage whose pattern a frame contains takes the sample.
JVM_STAGES = [
    ("json parse", ("JsonToStructs", "JacksonParser", "com.fasterxml.jackson", "JsonInferSchema")),
    ("decimal arithmetic (BigDecimal: parse, checks, multiply, encode)", ("java.math.", "org.apache.spark.sql.types.Decimal", "scala.math.BigDecimal")),
    ("postgres copy from the executors (JDBC)", ("org.postgresql.", "io.stockpulse.sink")),
    ("csv encode for the JVM writer", ("concatWs", "UTF8String.concat", "UTF8String.replace", "TimestampFormatter",
                                       "DateTimeFormatter", "Decimal.toString", "BigDecimal.toPlainString")),
    ("kafka read", ("org.apache.kafka.", "kafka010")),
    ("parquet write", ("org.apache.parquet.", "ParquetOutputWriter", "FileFormatDataWriter", "compress")),
    ("arrow transfer", ("org.apache.arrow.", "ArrowConverters", "ArrowWriter", "ArrowBatchStreamWriter")),
    ("utf8 / string checks", ("UTF8String", "isValidUTF8", "makeValid")),
    ("generated code (enrich, checks)", ("GeneratedClass", "GeneratedIterator", "codegen")),
    ("planning and analysis", ("catalyst.analysis", "catalyst.optimizer", "catalyst.rules", "QueryExecution",
                               "catalyst.trees", "SparkPlanner", "CodeGenerator", "janino", "codehaus")),
    ("py4j / python bridge", ("py4j.", "PythonRunner", "PythonForeachBatch")),
    ("checkpoint and state I/O", ("HDFSMetadataLog", "CheckpointFileManager", "org.apache.hadoop.")),
    ("class loading (start-up)", ("java.lang.ClassLoader", "jdk.internal.loader", "java.util.zip", "java.util.jar")),
]
PY_STAGES = [
    ("collect to arrow", ("toArrow", "_collect_as_arrow", "load_stream", "pyarrow/ipc", "serializers")),
    ("csv encode", ("write_csv", "_csv")),
    ("copy to postgres", ("copy", "psycopg")),
    ("py4j callback", ("py4j",)),
]


def stage_of(frames: list[str], stages) -> str:
    """The stage of the innermost frame that names one; frames are innermost first."""
    for frame in frames:
        for stage, patterns in stages:
            if any(p in frame for p in patterns):
                return stage
    return "other"


def postgres_pid(server: EmbeddedPostgres) -> int:
    """The postmaster's pid: the first line of ``postmaster.pid`` in its data directory."""
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def jvm_profile_file(jfr_file: Path) -> dict:
    """JFR execution samples per stage (executor task threads and all threads)."""
    # jfr prints 5 frames per stack unless told; the stages need the frames that name them.
    out = subprocess.run(["jfr", "print", "--json", "--stack-depth", "128", "--events", "jdk.ExecutionSample",
                          str(jfr_file)],
                         capture_output=True, text=True, check=True).stdout
    events = json.loads(out)["recording"]["events"]
    stages, tasks, leaves = Counter(), Counter(), Counter()
    for event in events:
        values = event["values"]
        frames = [f"{f['method']['type']['name']}.{f['method']['name']}".replace("/", ".")
                  for f in (values.get("stackTrace") or {}).get("frames", [])]
        stage = stage_of(frames, JVM_STAGES)
        stages[stage] += 1
        thread = (values.get("sampledThread") or {}).get("javaName") or ""
        if thread.startswith("Executor task launch"):
            tasks[stage] += 1
        if frames:
            leaves[frames[0]] += 1
    return {"samples": sum(stages.values()), "by_stage": _shares(stages), "task_threads_by_stage": _shares(tasks),
            "top_leaf_frames": [[f, n] for f, n in leaves.most_common(25)]}


def python_profile(raw_file: Path) -> dict:
    """py-spy's collapsed stacks (outermost first, ``;``-separated, count last) per stage."""
    stages, leaves = Counter(), Counter()
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = list(reversed(stack.split(";")))
        stages[stage_of(frames, PY_STAGES)] += int(count)
        leaves[frames[0]] += int(count)
    return {"samples": sum(stages.values()), "by_stage": _shares(stages),
            "top_leaf_frames": [[f, n] for f, n in leaves.most_common(15)]}


def _shares(counts: Counter) -> dict:
    total = sum(counts.values()) or 1
    return {stage: {"samples": n, "share": round(n / total, 3)} for stage, n in counts.most_common()}


def phases(progress: dict) -> dict:
    """Per query: batches, rows and the summed ``durationMs`` of each phase, in seconds."""
    result = {}
    for name, reports in progress.items():
        with_data = [r for r in reports if r["numInputRows"] > 0]
        totals = Counter()
        for report in with_data:
            totals.update(report["durationMs"])
        result[name] = {"batches": len(with_data), "rows": sum(r["numInputRows"] for r in with_data),
                        "seconds": {k: round(v / 1000, 2) for k, v in totals.most_common()}}
    return result


def profile_run(server, broker, work: Path, sent: dict, batch_rows: int, extra: dict, keep: Path | None,
                java_options: str = "") -> dict:
    url = fresh_database(server, "profile")
    env = job_env(broker.bootstrap, "profile", url, work / "job", None, LAKE_PARTITION_BY="index",
                  MAX_OFFSETS_PER_TRIGGER=str(batch_rows), **extra)
    jfr_file, py_file, progress_file = work / "job.jfr", work / "driver.txt", work / "progress.json"
    env["JAVA_TOOL_OPTIONS"] = (f"-XX:StartFlightRecording=filename={jfr_file},settings=profile,dumponexit=true "
                                 f"-XX:FlightRecorderOptions=stackdepth=512 {java_options}").strip()
    command = [sys.executable, str(ROOT / "consumer" / "consumer.py"), "--once", "--progress-file", str(progress_file)]
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy:  # in requirements-lock.txt; a venv without it still gets the rest of the profile
        command = [py_spy, "record", "--format", "raw", "--rate", "50", "-o", str(py_file), "--", *command]
    else:
        logger.warning("py-spy not found: the Python driver is not sampled")
    server_pids = descendants(postgres_pid(server))
    broker_pids = descendants(read_pid(broker.pid_file))
    before = {"postgres": cpu_seconds(server_pids), "broker": cpu_seconds(broker_pids)}
    started = time.monotonic()
    log_file = work / "job.log"  # a file, not a pipe: nobody reads a pipe while the job runs
    log = log_file.open("w")
    job = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    peak: dict[str, float] = {}
    last_seen: dict[int, tuple[str, float]] = {}
    while job.poll() is None:
        for pid in descendants(job.pid)[1:]:  # below py-spy: the driver, the JVM, any Python worker
            last_seen[pid] = (kind_of(pid), cpu_seconds([pid]))
        for pid in descendants(postgres_pid(server)):  # backends come and go with connections
            if pid not in server_pids:
                last_seen[pid] = ("postgres backends", cpu_seconds([pid]))
        time.sleep(0.5)
    seconds = time.monotonic() - started
    log.close()
    stderr = log_file.read_text(errors="replace")
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        for path in (jfr_file, py_file, progress_file, log_file):
            if path.exists():
                shutil.copy(path, keep / path.name)
    if job.returncode != 0:
        raise SystemExit(f"the profiled job failed:\n{stderr[-3000:]}")
    for kind, used in last_seen.values():
        peak[kind] = peak.get(kind, 0.0) + used
    cpu = {**{k: round(v, 1) for k, v in peak.items()},
           "postgres": round(cpu_seconds(server_pids) - before["postgres"], 1),
           "broker": round(cpu_seconds(broker_pids) - before["broker"], 1)}
    rows = sent["rows"]
    counts = {"rows_in_postgres": count_rows(url), "rows_in_lake": count_lake_rows(work / "job" / "lake")}
    if counts["rows_in_postgres"] != rows or counts["rows_in_lake"] != rows:
        raise SystemExit(f"profile run lost or duplicated rows: produced {rows}, {counts}")
    return {"rows": rows, "batch_rows": batch_rows, "settings": extra, "seconds_wall": round(seconds, 1),
            "cpu_seconds": cpu, "cpu_seconds_available": round(seconds * (os.cpu_count() or 1), 1),
            **counts, "spark_phases": phases(json.loads(progress_file.read_text())),
            "jvm": jvm_profile_file(jfr_file), "python_driver": python_profile(py_file) if py_file.exists() else None}


def main() -> int:
    logs.configure()
    parser = argparse.ArgumentParser(description="Profile the streaming job on private services")
    parser.add_argument("--ticks", type=int, default=60_000)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="a job setting to try")
    parser.add_argument("--java-options", default="", help="JVM options to try (JAVA_TOOL_OPTIONS)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the raw JFR and py-spy files here")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)

    started = datetime.now(timezone.utc)
    results: dict = {"started": started.isoformat(timespec="seconds"), "versions": versions()}
    with private_services("stockpulse-profile-") as (work, server, broker):
        ensure_topic(broker.bootstrap, "profile", PARTITIONS)
        sent = produce(broker.bootstrap, "profile", args.ticks)
        results["producer"] = sent
        results["run"] = profile_run(server, broker, work, sent, args.batch_rows, extra, args.keep, args.java_options)
    print(write_results(results, "profile-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
