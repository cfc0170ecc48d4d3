"""Build the analytics marts: ``dbt build`` of ``analytics/`` on DuckDB, over the compacted zone.

Usage::

    python -m stockpulse.lakehouse.dbt_build

prints one line when the marts are in place, for example::

    dbt build: 5 models, 1 seed, 38 tests passed; dim_index 14 rows, fct_index_daily 50568 rows,
    fct_volume_share 208 rows; 17.2 s

(a test that only warns, such as an index missing from ``analytics/seeds/indexInfo.csv``, is
named after ``passed``; dbt's own console lines go to the log), and otherwise one line naming
the failing model or test (exit 1) or what is wrong with the settings or the input (exit 2).
``ANALYTICS_DUCKDB`` keeps the last good build either way.

**dbt runs as a subprocess** (``python -m dbt.cli.main``, the interpreter running this module),
not through ``dbtRunner`` in this process, because:

- dbt reads its settings (``env_var()`` in ``profiles.yml`` and in the models) from the process
  environment. :func:`run_build` takes ``env`` as a mapping; a child gets exactly that mapping,
  whereas in process it would have to be written into ``os.environ``, which every other thread of
  an Airflow worker (or of a test session) shares.
- dbt sets up logging and global flags for the whole process and its docs say ``dbtRunner`` is
  not safe to call concurrently; a child keeps all of that, and any crash, out of the caller.
- What a run did is read from ``run_results.json`` either way, so nothing is lost. The price is
  about a second of interpreter start-up on a build of 10-20 s.

**The build goes into a side file** (``<ANALYTICS_DUCKDB>.building``) that replaces
``ANALYTICS_DUCKDB`` with one ``rename`` when every model and test passed, because:

- a reader (the dashboard opens the file ``read_only`` for a moment) sees the old file or the new
  one, never a half-built one, and a failed build (a data test that fails) leaves the last good
  marts in place;
- DuckDB locks its file: a writer cannot open a file a reader holds. The build writes a file no
  reader ever opens, and ``rename`` ignores locks, so the dashboard can never block a build (a
  reader with the old file open keeps reading the old inode until it closes it).
- DuckDB names a database after its file name up to the first dot, so ``x.duckdb.building`` and
  ``x.duckdb`` are both ``x`` and the views dbt creates (which name their database) still work
  after the rename.

**An empty or missing compacted zone is an error** (:class:`CompactedZoneEmpty`, one line, the old
marts kept) rather than an empty build: a wrong ``LAKE_COMPACTED_PATH`` would otherwise replace
good marts with empty ones without a word. The DAG may catch that class to skip instead. Only a
local zone is checked before dbt starts; for an object store, dbt's own "No files found" error is
reported in the same one-line form.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from stockpulse.config import PROJECT_ROOT, LakehouseSettings, StackSettings, StatePaths, env_str, local_path
from stockpulse.errors import ConfigError, InputError, StockPulseError
from stockpulse.locks import try_lock
from stockpulse import job_runs
from stockpulse.lakehouse.storage import duckdb_location, open_location

logger = logging.getLogger(__name__)

DBT_PROJECT = PROJECT_ROOT / "analytics"
MARTS = ("dim_index", "fct_index_daily", "fct_volume_share")
"""The tables the dashboard reads (schema ``main``); their row counts go into the summary."""

PASSED = {"success", "pass"}
FAILED = {"error", "fail", "runtime error"}
S3_SCHEMES = ("s3://", "s3a://", "s3n://")


class DbtBuildError(StockPulseError):
    """``dbt build`` failed: a model did not build or a data test failed (the message names it)."""


class CompactedZoneEmpty(InputError):
    """The compacted zone holds no Parquet file yet: run the lake compaction first."""


# -- pure: settings for dbt ------------------------------------------------------------------


def is_object_store(location: str) -> bool:
    return location.startswith(S3_SCHEMES)


def s3_settings(env: Mapping[str, str]) -> dict[str, str]:
    """DuckDB's S3 secret fields (besides the keys) from the AWS SDK's standard variables, named
    as target ``s3`` of ``analytics/profiles.yml`` reads them (``STOCKPULSE_DBT_<KEY>``).

    DuckDB wants ``ENDPOINT`` as host:port and TLS as a separate flag, where the SDKs take one URL
    (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, e.g. ``http://127.0.0.1:8333``). A custom
    endpoint (SeaweedFS, MinIO) gets path-style URLs, which such servers expect; without one it
    is AWS itself, with virtual-host URLs.
    """
    endpoint = env_str(env, "AWS_ENDPOINT_URL_S3", env_str(env, "AWS_ENDPOINT_URL", ""))
    region = env_str(env, "AWS_REGION", env_str(env, "AWS_DEFAULT_REGION", "us-east-1"))
    if not endpoint:
        return {"s3_endpoint": "s3.amazonaws.com", "s3_use_ssl": "true", "s3_url_style": "vhost", "s3_region": region}
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"AWS_ENDPOINT_URL={endpoint!r}: use http://host:port or https://host[:port]")
    return {"s3_endpoint": parsed.netloc, "s3_use_ssl": "true" if parsed.scheme == "https" else "false",
            "s3_url_style": "path", "s3_region": region}


def dbt_environment(env: Mapping[str, str], database: Path, compacted: str,
                    s3: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the caller's, with the variables ``analytics/profiles.yml`` and the
    models read pointed at this build; ``s3`` holds target ``s3``'s extra settings, each passed as
    ``STOCKPULSE_DBT_<KEY>``."""
    child = dict(env)
    child.update({
        "ANALYTICS_DUCKDB": str(database),
        "LAKE_COMPACTED_PATH": duckdb_location(compacted),
        # no tracking calls: they would wait on a network these machines may not have
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    })
    for key, value in (s3 or {}).items():
        child[f"STOCKPULSE_DBT_{key.upper()}"] = value
    return child


def dbt_command(target: str, state: Path, project: Path = DBT_PROJECT) -> list[str]:
    """``dbt build`` with dbt's own files (``target/``, ``logs/``) in the state directory, not in
    the repository; partial parsing keeps working across runs because ``target/`` stays."""
    return [sys.executable, "-m", "dbt.cli.main", "build",
            "--project-dir", str(project), "--profiles-dir", str(project), "--target", target,
            "--target-path", str(state / "target"), "--log-path", str(state / "logs"),
            "--no-use-colors"]


# -- pure: reading a run ---------------------------------------------------------------------


def node_name(unique_id: str) -> tuple[str, str]:
    """(kind, name) of a dbt node id: ``test.stockpulse.unique_x.1a2b`` is ("test", "unique_x")."""
    parts = unique_id.split(".")
    return parts[0], parts[2] if len(parts) > 2 else unique_id


def summarize(run_results: Mapping) -> dict:
    """Counts by kind and outcome, and the names of tests that only warned."""
    counts: Counter = Counter()
    warnings = []
    for result in run_results.get("results", []):
        kind, name = node_name(result["unique_id"])
        status = str(result["status"]).lower()
        outcome = ("passed" if status in PASSED else "failed" if status in FAILED
                   else "warned" if status == "warn" else "skipped")
        if outcome == "skipped":
            counts["skipped"] += 1
        else:
            counts[f"{kind}s_{outcome}"] += 1
        if outcome == "warned":
            warnings.append(name)
    summary = {key: counts[key] for key in ("models_passed", "models_failed", "seeds_passed", "seeds_failed",
                                            "tests_passed", "tests_failed", "tests_warned", "skipped")}
    summary["warnings"] = sorted(warnings)
    return summary


def error_detail(message: str | None) -> str:
    """The informative line of a dbt error: not its ``Runtime Error in model x (path)`` header."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return "no message"
    informative = lines[1] if len(lines) > 1 and " in " in lines[0] and lines[0].endswith(")") else lines[0]
    return informative[:300]


def failure_message(run_results: Mapping | None, output: Iterable[str]) -> str:
    """One line naming what failed: every failing test and model from ``run_results.json``, or,
    when dbt stopped before running anything (a bad profile, a parse error), its own error line."""
    if run_results is not None:
        failures = []
        skipped = 0
        for result in run_results.get("results", []):
            kind, name = node_name(result["unique_id"])
            status = str(result["status"]).lower()
            if status == "fail":
                failures.append(f"test {name} failed ({_count(result.get('failures') or 0, 'row')})")
            elif status in FAILED:
                failures.append(f"{kind} {name}: {error_detail(result.get('message'))}")
            elif status == "skipped":
                skipped += 1
        if failures:
            tail = f" ({skipped} nodes skipped)" if skipped else ""
            return "dbt build failed: " + "; ".join(failures) + tail
    lines = [line.strip() for line in output if line.strip()]
    for i, line in enumerate(lines):
        if "Error" in line.split(" ", 2)[-1][:60]:  # "Runtime Error", "Parsing Error", ...: header then detail
            detail = lines[i + 1] if i + 1 < len(lines) else ""
            return f"dbt build failed: {_without_time(line)}{': ' + _without_time(detail) if detail else ''}"[:500]
    return f"dbt build failed: {_without_time(lines[-1]) if lines else 'no output'}"[:500]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _without_time(line: str) -> str:
    """dbt's console line without its leading ``HH:MM:SS`` stamp."""
    head, _, rest = line.partition(" ")
    return rest.strip() if head.count(":") == 2 and head.replace(":", "").isdigit() else line


def summary_line(summary: Mapping) -> str:
    """What the CLI prints on success."""
    passed = (f"{_count(summary['models_passed'], 'model')}, {_count(summary['seeds_passed'], 'seed')}, "
              f"{_count(summary['tests_passed'], 'test')} passed")
    if summary.get("warnings"):
        passed += f", {len(summary['warnings'])} warned ({', '.join(summary['warnings'])})"
    rows = ", ".join(f"{name} {_count(count, 'row')}" for name, count in summary.get("rows", {}).items())
    return f"dbt build: {passed}; {rows}; {summary.get('seconds', 0):.1f} s"


# -- I/O -------------------------------------------------------------------------------------


def httpfs_extension() -> Path:
    """DuckDB's httpfs extension as the PyPI package ``duckdb-extension-httpfs`` ships it:
    ``INSTALL httpfs`` would download it, which these machines cannot."""
    import duckdb
    import duckdb_extension_httpfs

    path = (Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}"
            / "httpfs.duckdb_extension")
    if not path.is_file():
        raise ConfigError(f"no httpfs extension for DuckDB {duckdb.__version__} at {path}: install "
                          f"duckdb-extension-httpfs=={duckdb.__version__} (requirements-lock.txt pins it)")
    return path


def check_compacted_zone(location: str, env: Mapping[str, str] = os.environ) -> None:
    """Refuse to build from a zone without a single Parquet file (see the module docstring):
    local, or on S3 through pyarrow (DuckDB's own error there would be a failed model)."""
    import pyarrow.fs as pafs

    fs, root = open_location(location, env)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound and local_path(location) is not None:
        raise CompactedZoneEmpty(f"the compacted zone {location} (LAKE_COMPACTED_PATH) does not exist: "
                                 "run the lake compaction first")
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    if not any(i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(".")
               for i in fs.get_file_info(selector)):  # what analytics/macros/compacted_ticks.sql reads
        raise CompactedZoneEmpty(f"the compacted zone {location} (LAKE_COMPACTED_PATH) holds no Parquet file yet: "
                                 "run the lake compaction first")


def run_dbt(command: list[str], env: Mapping[str, str], results_file: Path) -> tuple[int, dict | None, list[str]]:
    """Run dbt, its console lines going to this module's log; (exit code, run_results or None,
    the last lines of output)."""
    results_file.unlink(missing_ok=True)  # a previous run's results must not pass for this one's
    tail: deque[str] = deque(maxlen=40)
    logger.info("running dbt %s (target %s)", command[3], command[command.index("--target") + 1])
    with subprocess.Popen(command, env=dict(env), cwd=DBT_PROJECT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    logger.info("dbt: %s", line)
                    tail.append(line)
            code = proc.wait()
        except BaseException:  # interrupted: do not leave dbt writing on its own
            proc.kill()
            raise
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    return code, results, list(tail)


def mart_rows(database: Path) -> dict[str, int]:
    """Row counts of the marts, after folding DuckDB's write-ahead log into the file so that the
    file alone is the database when it is renamed."""
    import duckdb

    with duckdb.connect(str(database)) as con:
        con.execute("CHECKPOINT")
        return {name: con.execute(f'SELECT count(*) FROM main."{name}"').fetchone()[0] for name in MARTS}


def remove_database(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


def swap_in(building: Path, target: Path) -> None:
    """Put the finished build in place with one atomic rename (same directory, same file system)."""
    # A write-ahead log left beside the target by a killed hand-run dbt would be replayed onto the
    # new file by the next writer: it belongs to the old file, so it goes with it.
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    os.replace(building, target)


def build(lake: LakehouseSettings, paths: StatePaths, env: Mapping[str, str], summary: dict) -> dict:
    """One ``dbt build`` into a side file, swapped in on success; fills ``summary`` as it goes so a
    failed run is recorded with what it did."""
    target = lake.analytics_db
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(target.name + ".building")
    lock = try_lock(target.with_name(target.name + ".lock"))
    if lock is None:
        raise DbtBuildError(f"another dbt build is writing {target}: wait for it to finish")
    try:
        check_compacted_zone(lake.compacted_path, env)
        state = paths.root / "dbt"
        s3 = None
        if is_object_store(lake.compacted_path):
            s3 = {**s3_settings(env), "httpfs": str(httpfs_extension()),
                  "extension_dir": str(state / "duckdb_extensions")}
        remove_database(building)  # left by a killed build
        started = time.monotonic()
        code, results, tail = run_dbt(dbt_command("s3" if s3 else "local", state),
                                      dbt_environment(env, building, lake.compacted_path, s3),
                                      state / "target" / "run_results.json")
        summary["seconds"] = round(time.monotonic() - started, 1)
        if results is not None:
            summary.update(summarize(results))
        if code != 0 or results is None:
            raise DbtBuildError(failure_message(results, tail))
        summary["rows"] = mart_rows(building)
        swap_in(building, target)
        logger.info("%s is the new build: %s", target, summary["rows"])
        return summary
    finally:
        remove_database(building)  # only still there when the build failed
        lock.close()


def run_build(env: Mapping[str, str] = os.environ, *, record: bool = True) -> dict:
    """Build the marts into ``ANALYTICS_DUCKDB`` and return the summary (counts of models, seeds
    and tests by outcome, warned tests, rows per mart, seconds).

    The run is recorded in ``stockpulse_job_runs`` (job ``dbt_build``) at ``DATABASE_URL`` (or
    the embedded server's URL), best effort: no PostgreSQL, no record, the build still runs.
    ``record=False`` skips it (tests that must not write to a server on the default port).
    Raises :class:`DbtBuildError` or another :class:`StockPulseError`, with one line.
    """
    stack = StackSettings.from_env(env)
    lake = LakehouseSettings.from_env(env)
    with job_runs.recorded(stack.postgres.url if record else None, job_runs.DBT_BUILD) as summary:
        return build(lake, stack.paths, env, summary)


def main(argv: list[str] | None = None) -> int:
    """0 when the marts were rebuilt, 1 when dbt failed, 2 for bad settings or no input."""
    parser = argparse.ArgumentParser(
        prog="python -m stockpulse.lakehouse.dbt_build",
        description="Rebuild the analytics marts (dbt on DuckDB) from the lake's compacted zone into "
                    "ANALYTICS_DUCKDB; the previous build stays in place when this one fails.",
    )
    parser.parse_args(argv)
    try:
        summary = run_build()
    except DbtBuildError as exc:
        print(f"dbt_build: error: {exc}", file=sys.stderr)
        return 1
    except StockPulseError as exc:
        print(f"dbt_build: error: {exc}", file=sys.stderr)
        return 2
    print(summary_line(summary))
    return 0


if __name__ == "__main__":
    from stockpulse import logs

    logs.configure()
    sys.exit(main())
