"""The compaction job: merge the raw zone's small files into the compacted zone, provably.

Design (``docs/lakehouse.md`` weighs it against a table format):

- **Two zones, one log.** The streaming job keeps writing the raw zone (``LAKE_PATH``) with Spark's
  file sink. Compaction writes ``LAKE_COMPACTED_PATH/<unit>/part-<hash>.parquet`` and commits each
  file with a log entry ``_compaction/<name>.json`` that names the raw files it holds. It never
  touches the sink's ``_spark_metadata`` (the running query owns it).
- **Readers stay exact.** :mod:`stockpulse.lakehouse.lake_view` reads both logs: compacted files
  of committed entries, plus committed raw files no entry covers. Raw inputs are deleted only
  ``COMPACTION_DELETE_GRACE_SECONDS`` after their entry committed, so a reader that planned just
  before a commit still finds its files. Readers that list the compacted zone's directories
  (DuckDB/dbt) see each compacted row once: a file appears whole (written under a hidden name and
  renamed, or one S3 PUT), is never rewritten, and its inputs are never in another file.
- **Killed at any point, rerun.** The plan of a file is written first (``<name>.pending``); a
  rerun finds it and either commits the finished file after checking it again, or drops both.
  Output names are a hash of the inputs, so a repeated task writes the same file.
- **It checks its own work.** Rows and an order-free checksum of the inputs are compared with the
  file read back; on any difference the file is removed, nothing is committed or deleted, and the
  run fails with the unit's name.

One compaction runs at a time (a lock in the state directory), as one streaming job writes a lake.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from stockpulse.config import LakehouseSettings, StackSettings
from stockpulse.errors import StockPulseError
from stockpulse.lakehouse import compaction_plan as cp
from stockpulse.lakehouse.storage import open_location
from stockpulse.lakehouse.tables import STORED_SCHEMA, checksum, normalise
from stockpulse.locks import try_lock
from stockpulse import job_runs

logger = logging.getLogger(__name__)

LOG_DIR = "_compaction"
SINK_LOG_DIR = "_spark_metadata"
PENDING = ".pending"
PAUSE_VARIABLE = "STOCKPULSE_COMPACTION_PAUSE_AT"
"""Fault injection for the kill tests: ``written`` or ``committed`` makes the job log the stage
and wait there, so a test can ``kill -9`` it at a known point. Unset in normal use."""


class CompactionError(StockPulseError):
    """A compaction that must not go on: its output does not match its inputs, or the lake is
    not what it should be."""


@dataclass(frozen=True)
class Zone:
    """A zone of the lake opened through pyarrow: local disk and S3 alike."""

    fs: pafs.FileSystem
    root: str  # the filesystem's path of the zone's root (no scheme)

    def path(self, relative: str) -> str:
        return f"{self.root.rstrip('/')}/{relative}"

    @property
    def local(self) -> bool:
        return self.fs.type_name == "local"


def open_zone(location: str, env: Mapping[str, str]) -> Zone:
    fs, root = open_location(location, env)
    return Zone(fs, root)


# -- listing ---------------------------------------------------------------------------------------

def _listing(zone: Zone, sub: str = "") -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(zone.path(sub) if sub else zone.root, recursive=True, allow_not_found=True)
    return [info for info in zone.fs.get_file_info(selector) if info.type == pafs.FileType.File]


def raw_files(zone: Zone) -> dict[str, cp.RawFile]:
    """Part files present in the raw zone, by relative path (``_``/``.`` entries skipped, as Spark's
    reader skips them)."""
    found = {}
    prefix = zone.root.rstrip("/") + "/"
    for info in _listing(zone):
        relative = info.path[len(prefix):]
        parts = relative.split("/")
        if any(p.startswith(("_", ".")) for p in parts) or not parts[-1].startswith("part-"):
            continue
        mtime = info.mtime.timestamp() if info.mtime else 0.0
        found[relative] = cp.RawFile(relative, info.size or 0, mtime)
    return found


def sink_log_texts(zone: Zone) -> list[str]:
    """The file sink log files that list every committed raw file (listed again once when Spark
    removed an old log file between the listing and the read: it does so after a new ``.compact``)."""
    try:
        return _read_sink_log(zone)
    except FileNotFoundError:
        return _read_sink_log(zone)


def _read_sink_log(zone: Zone) -> list[str]:
    infos = _listing(zone, SINK_LOG_DIR)
    by_name = {info.base_name: info.path for info in infos}
    texts = []
    for name in cp.log_files_to_read(by_name):
        with zone.fs.open_input_stream(by_name[name]) as stream:
            texts.append(stream.read().decode())
    return texts


def committed_raw(zone: Zone) -> set[str]:
    """Raw files committed by the streaming job, relative to the raw zone."""
    return cp.committed_paths(sink_log_texts(zone), zone.root)


def entries(zone: Zone) -> tuple[list[cp.Entry], list[cp.Entry]]:
    """The compacted zone's committed entries and pending plans."""
    committed, pending = [], []
    for info in _listing(zone, LOG_DIR):
        name = info.base_name
        if name.startswith("."):
            continue
        with zone.fs.open_input_stream(info.path) as stream:
            text = stream.read().decode()
        if name.endswith(".json"):
            committed.append(cp.Entry.from_json(name.removesuffix(".json"), text))
        elif name.endswith(PENDING):
            pending.append(cp.Entry.from_json(name.removesuffix(PENDING), text))
    return committed, pending


# -- writing ---------------------------------------------------------------------------------------

def put_atomically(zone: Zone, relative: str, write: Callable[[str], None]) -> None:
    """Make ``relative`` appear whole or not at all: on local disk written under a hidden name and
    renamed; on an object store one upload, which becomes visible only when complete."""
    final = zone.path(relative)
    parent = final.rsplit("/", 1)[0]
    zone.fs.create_dir(parent, recursive=True)
    if not zone.local:
        write(final)
        return
    hidden = f"{parent}/.{final.rsplit('/', 1)[1]}.tmp"
    write(hidden)
    zone.fs.move(hidden, final)


def put_text(zone: Zone, relative: str, text: str) -> None:
    def write(path: str) -> None:
        with zone.fs.open_output_stream(path) as stream:
            stream.write(text.encode())
    put_atomically(zone, relative, write)


def delete_quietly(zone: Zone, path: str) -> bool:
    try:
        zone.fs.delete_file(path)
        return True
    except FileNotFoundError:
        return False


# -- one task ----------------------------------------------------------------------------------------

PARQUET = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(coerce_int96_timestamp_unit="us"))
"""Spark writes timestamps as INT96; read at nanoseconds (pyarrow's default) they silently wrap
outside 1677-2262, and the contract allows years 1-9999. Microseconds is what Spark itself keeps."""


def read_files(zone: Zone, relatives: list[str] | tuple[str, ...]) -> pa.Table:
    """The rows of ``relatives`` with their directories' partition values, in the lake's schema.

    One pyarrow dataset over the file list reads them on several threads: a year of the default
    layout is hundreds of one-row files, where reading them one by one took 3x longer.
    """
    if not relatives:
        return STORED_SCHEMA.empty_table()
    keys: dict[str, None] = {}
    for relative in relatives:
        keys.update((key, None) for key, _ in cp.partition_of(relative))
    partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive") if keys else None
    dataset = ds.dataset([zone.path(r) for r in relatives], filesystem=zone.fs, format=PARQUET,
                         partitioning=partitioning, partition_base_dir=zone.root)
    return normalise(dataset.to_table())


def read_inputs(raw: Zone, inputs: tuple[str, ...]) -> pa.Table:
    """The inputs' rows with their directory's partition values, in the lake's schema."""
    return read_files(raw, inputs)


def file_columns(unit: tuple[tuple[str, str], ...]) -> list[str]:
    """Columns stored inside a compacted file: all but those its directory names carry."""
    in_path = {key for key, _ in unit}
    return [name for name in STORED_SCHEMA.names if name not in in_path]


def read_output(out: Zone, output: str) -> pa.Table:
    return read_files(out, [output])


def write_output(out: Zone, task: cp.Task, table: pa.Table) -> None:
    ordered = table.sort_by([("date", "ascending"), ("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    body = ordered.select(file_columns(task.unit))

    def write(path: str) -> None:
        pq.write_table(body, path, filesystem=out.fs, compression="zstd", coerce_timestamps="us")
    put_atomically(out, task.output, write)


def pause_for_test(stage: str, env: Mapping[str, str]) -> None:
    if env.get(PAUSE_VARIABLE) == stage:
        logger.warning("compaction paused at %r (%s is set)", stage, PAUSE_VARIABLE)
        while True:
            time.sleep(1)


def compact(raw: Zone, out: Zone, task: cp.Task, env: Mapping[str, str], now: Callable[[], float]) -> cp.Entry:
    """Write, verify and commit one compacted file; returns its committed entry."""
    before = read_inputs(raw, task.inputs)
    plan = cp.Entry(task.name, task.unit, task.output, task.inputs, before.num_rows, checksum(before), now())
    put_text(out, f"{LOG_DIR}/{task.name}{PENDING}", plan.to_json())
    write_output(out, task, before)
    pause_for_test("written", env)
    return commit_checked(raw, out, plan, before_rows=before.num_rows, before_sum=plan.checksum, now=now)


def commit_checked(raw: Zone, out: Zone, plan: cp.Entry, before_rows: int, before_sum: str,
                   now: Callable[[], float]) -> cp.Entry:
    """Read the file back; commit it when rows and checksum match its inputs, else remove it."""
    after = read_output(out, plan.output)
    after_sum = checksum(after)
    if after.num_rows != before_rows or after_sum != before_sum:
        delete_quietly(out, out.path(plan.output))
        delete_quietly(out, out.path(f"{LOG_DIR}/{plan.name}{PENDING}"))
        raise CompactionError(
            f"{cp.unit_path(plan.unit) or 'lake'}: compacted file holds {after.num_rows} rows (checksum {after_sum}), "
            f"its {len(plan.inputs)} inputs {before_rows} (checksum {before_sum}); nothing committed or deleted")
    entry = cp.Entry(plan.name, plan.unit, plan.output, plan.inputs, before_rows, before_sum, now(),
                     {"rows_after": after.num_rows, "checksum_after": after_sum})
    put_text(out, f"{LOG_DIR}/{plan.name}.json", entry.to_json())
    delete_quietly(out, out.path(f"{LOG_DIR}/{plan.name}{PENDING}"))
    logger.info("compacted %d file(s), %d rows into %s", len(plan.inputs), before_rows, plan.output)
    return entry


# -- recovery ----------------------------------------------------------------------------------------

def recover(raw: Zone, out: Zone, pending: list[cp.Entry], present: set[str], now: Callable[[], float],
            committed_names: set[str]) -> int:
    """Finish what a killed run left: a pending plan whose file was written is checked and
    committed; one whose file or inputs are missing is dropped. Returns the plans committed.

    A plan whose entry was committed (the run died between writing the entry and removing the
    plan) only loses its ``.pending``: its file is named by a committed entry and must stay."""
    done = 0
    for plan in pending:
        if plan.name in committed_names:
            delete_quietly(out, out.path(f"{LOG_DIR}/{plan.name}{PENDING}"))
            continue
        written = out.fs.get_file_info(out.path(plan.output)).type == pafs.FileType.File
        inputs_there = all(p in present for p in plan.inputs)
        if written and inputs_there:
            before = read_inputs(raw, plan.inputs)
            if before.num_rows == plan.rows and checksum(before) == plan.checksum:
                try:
                    commit_checked(raw, out, plan, plan.rows, plan.checksum, now)
                    done += 1
                    continue
                except CompactionError as exc:  # the file was cut short or damaged: plan it again
                    logger.warning("%s", exc)
        if written:
            delete_quietly(out, out.path(plan.output))
        delete_quietly(out, out.path(f"{LOG_DIR}/{plan.name}{PENDING}"))
        logger.warning("dropped the unfinished plan %s of a killed compaction; its files are planned again", plan.name)
    return done


def remove_orphans(out: Zone, committed: list[cp.Entry], now: float, min_age: float) -> list[str]:
    """Parquet files of the compacted zone no entry names (a run killed between its pending plan
    being dropped and its file deleted), and hidden temporary files, once older than ``min_age``:
    a younger one may belong to a run elsewhere that is about to commit it (the lock is local)."""
    named = {out.path(e.output) for e in committed}
    removed = []
    for info in _listing(out):
        if info.mtime is not None and now - info.mtime.timestamp() < min_age:
            continue
        relative = info.path[len(out.root.rstrip('/')) + 1:]
        if relative.startswith(LOG_DIR + "/"):
            if info.base_name.endswith(".tmp"):
                delete_quietly(out, info.path)
            continue
        if info.path in named:
            continue
        if info.base_name.endswith((".parquet", ".tmp")):
            delete_quietly(out, info.path)
            removed.append(relative)
    if removed:
        logger.warning("removed %d compacted file(s) no log entry names", len(removed))
    return removed


def delete_inputs(raw: Zone, paths: list[str]) -> int:
    """Delete compacted raw files (with Hadoop's ``.crc`` sidecars on local disk)."""
    deleted = 0
    for relative in paths:
        if delete_quietly(raw, raw.path(relative)):
            deleted += 1
        if raw.local:
            directory, _, name = relative.rpartition("/")
            delete_quietly(raw, raw.path(f"{directory}/.{name}.crc" if directory else f".{name}.crc"))
    return deleted


def sweep_empty_directories(raw: Zone, now: float, min_age: float) -> int:
    """Remove partition directories of a local raw zone that are empty and were last changed at
    least ``min_age`` ago (deleting files changes a directory, so this is a later run's work).
    Removing one just emptied could race the stream creating a file in it (mkdir, then open)."""
    if not raw.local:
        return 0
    selector = pafs.FileSelector(raw.root, recursive=True, allow_not_found=True)
    directories = [i for i in raw.fs.get_file_info(selector) if i.type == pafs.FileType.Directory
                   and not any(p.startswith(("_", ".")) for p in i.path[len(raw.root) + 1:].split("/"))]
    removed = 0
    for info in sorted(directories, key=lambda i: len(i.path), reverse=True):
        if info.mtime is not None and now - info.mtime.timestamp() >= min_age:
            try:
                os.rmdir(info.path)
                removed += 1
            except OSError:
                pass
    return removed


# -- a run -------------------------------------------------------------------------------------------

def run(settings: LakehouseSettings, env: Mapping[str, str] = os.environ,
        now: Callable[[], float] = time.time) -> dict:
    """One compaction pass over the lake; returns what it did."""
    raw = open_zone(settings.raw_path, env)
    out = open_zone(settings.compacted_path, env)
    committed, pending = entries(out)
    sink_committed = committed_raw(raw)  # before listing: a batch committed in between is then only unlisted
    present = raw_files(raw)
    recovered = recover(raw, out, pending, set(present), now, {e.name for e in committed})
    if recovered or pending:
        committed, _ = entries(out)
    orphans = remove_orphans(out, committed, now(), settings.delete_grace_seconds)
    done = cp.covered(committed)
    missing = sorted(sink_committed - set(present) - done)
    if missing:
        logger.error("%d committed raw file(s) are gone without being compacted, e.g. %s: the raw zone lost "
                     "data outside this job", len(missing), missing[0])
    candidates = [f for path, f in present.items() if path in sink_committed]
    tasks = cp.plan(candidates, committed, now(), settings.min_age_seconds)
    rows = 0
    for task in tasks:
        entry = compact(raw, out, task, env, now)
        committed.append(entry)
        rows += entry.rows
    pause_for_test("committed", env)
    stale = cp.deletable(committed, set(present), now(), settings.delete_grace_seconds)
    deleted = delete_inputs(raw, stale)
    swept = sweep_empty_directories(raw, now(), settings.delete_grace_seconds)
    summary = {"files_compacted": sum(len(t.inputs) for t in tasks), "files_written": len(tasks), "rows": rows,
               "units": len({t.unit for t in tasks}), "raw_files_deleted": deleted,
               "empty_directories_removed": swept,
               "recovered": recovered, "orphans_removed": len(orphans), "missing_raw_files": len(missing),
               "raw_files_waiting": len(candidates) - sum(len(t.inputs) for t in tasks)}
    logger.info("compaction: %s", summary)
    return summary


def run_locked(stack: StackSettings, settings: LakehouseSettings, env: Mapping[str, str] = os.environ) -> dict:
    """:func:`run` under the compaction lock, recorded in ``stockpulse_job_runs``."""
    lock = try_lock(stack.paths.run / "lake_compaction.lock")
    if lock is None:
        raise CompactionError("another compaction of this lake is running (lock "
                              f"{stack.paths.run / 'lake_compaction.lock'}); try again when it ends")
    try:
        with job_runs.recorded(stack.postgres.url, job_runs.COMPACTION) as summary:
            summary.update(run(settings, env))
            return summary
    finally:
        lock.close()


def main(argv: list[str] | None = None) -> int:
    from stockpulse.logs import configure

    parser = argparse.ArgumentParser(
        prog="python -m stockpulse.lakehouse.compaction",
        description="Merge the raw lake's small files of closed partitions into the compacted zone "
                    "(LAKE_PATH -> LAKE_COMPACTED_PATH), verified by row counts and checksums.")
    parser.add_argument("--min-age", type=int, help="seconds a partition must be quiet to be closed "
                        "(default COMPACTION_MIN_AGE_SECONDS)")
    parser.add_argument("--grace", type=int, help="seconds before compacted raw files are deleted "
                        "(default COMPACTION_DELETE_GRACE_SECONDS)")
    args = parser.parse_args(argv)
    configure()
    env = dict(os.environ)
    if args.min_age is not None:
        env["COMPACTION_MIN_AGE_SECONDS"] = str(args.min_age)
    if args.grace is not None:
        env["COMPACTION_DELETE_GRACE_SECONDS"] = str(args.grace)
    try:
        summary = run_locked(StackSettings.from_env(env), LakehouseSettings.from_env(env), env)
    except StockPulseError as exc:
        logger.error("%s", exc)
        return 1
    except (OSError, pa.ArrowException) as exc:
        logger.error("compaction failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 1
    print_summary = " ".join(f"{k}={v}" for k, v in summary.items())
    logger.info("done: %s", print_summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
