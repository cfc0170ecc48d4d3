"""A class-data archive (AppCDS) for the job's JVM: start-up maps Spark's classes from one file.

Why: before its first micro-batch the job's JVM loads and verifies some ten thousand classes
from ~250 jars (Spark, Kafka, Parquet, the JDBC driver). Mapped from an archive written by an
earlier run, the start to the first batch took 0.78x as long here (``docs/performance.md``).

How, on Java 17 (``-XX:+AutoCreateSharedArchive`` only arrived in JDK 19): a job that finds no
archive for its JDK and classpath asks its JVM to write one when it exits
(``-XX:ArchiveClassesAtExit``), under a temporary name. When the job ends cleanly it waits for
the JVM's orderly exit (which is what writes the file whole), has a fresh JVM map it (a file cut
short in its body crashes that JVM with SIGBUS, measured) and renames it into place; later jobs
map it (``-XX:SharedArchiveFile``). A job killed while its JVM was still writing leaves only a
temporary file, which a later start removes once it is ten minutes old. The key names the JDK, the jars
on the JVM's class path and its options, so a JVM never meets an archive written for another.

Only for a JVM this process starts (``python consumer/consumer.py``, as ``make up``, Airflow and
the benchmark run it); spark-submit's driver JVM is already running when Python starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

logger = logging.getLogger(__name__)

KEEP = 2
"""Archives kept, the most recently used: each is ~200 MB, and one serves a pyspark, a JDK and a
set of JVM options (an upgrade writes the next)."""

CHECK_TIMEOUT_SECONDS = 60
EXIT_TIMEOUT_SECONDS = 120
"""How long a job that ends cleanly waits for its JVM to write the archive and exit."""


@dataclass(frozen=True)
class ArchivePlan:
    """What this start does: map ``path``, or (``training`` set) have the JVM write it."""

    path: Path
    training: Path | None = None

    @property
    def java_options(self) -> tuple[str, ...]:
        if self.training is not None:
            # Writing, the JVM names on stdout each class it leaves out (signed jars, classes
            # generated at run time): thousands of lines, none of them a fault.
            return (f"-XX:ArchiveClassesAtExit={self.training}", "-Xlog:cds*=off")
        return (f"-XX:SharedArchiveFile={self.path}",)


def _stamp(path: Path) -> str:
    """A file's identity for the key: where it is, its size and modification time (what the JVM
    itself checks of each classpath entry before mapping an archive)."""
    try:
        info = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{info.st_size}:{info.st_mtime_ns}"


def archive_key(java: Path, classpath: Iterable[Path], options: str) -> str:
    """A name that changes whenever the archive would no longer fit: another JDK (its binary and
    its module image), another set of jars, other JVM options (a heap over 32 GB, another GC)."""
    java = java.resolve()
    parts = [_stamp(java), _stamp(java.parent.parent / "lib" / "modules"), options,
             *sorted(_stamp(Path(entry)) for entry in classpath)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def java_binary(env: Mapping[str, str] = os.environ) -> Path | None:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = env.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    found = shutil.which("java", path=env.get("PATH"))
    return Path(found) if found else None


def spark_classpath() -> list[Path]:
    """pyspark's own jars: the driver JVM's class path when pyspark starts it."""
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))


LAUNCHER_CLASS_PATH = ("SPARK_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_DIST_CLASSPATH")
"""Variables whose entries Spark's launcher adds to the driver JVM's class path, beside pyspark's
jars and the configuration directory (checked: ``java.class.path`` of a pyspark JVM)."""


def launcher_class_path(env: Mapping[str, str] = os.environ) -> list[tuple[str, Path]]:
    """``(variable, entry)`` for what the environment puts on the JVM's class path: the
    configuration directory (``SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``) and
    :data:`LAUNCHER_CLASS_PATH`. Entries that do not exist change nothing for the JVM, nor for
    the archive's key."""
    conf_dir = env.get("SPARK_CONF_DIR") or (str(Path(env["SPARK_HOME"]) / "conf") if env.get("SPARK_HOME") else "")
    named = [("SPARK_CONF_DIR", conf_dir), *((name, env.get(name, "")) for name in LAUNCHER_CLASS_PATH)]
    return [(name, Path(entry)) for name, value in named for entry in value.split(os.pathsep) if entry]


def unarchivable(entries: Iterable[tuple[str, Path]]) -> tuple[str, Path] | None:
    """The first class path entry that rules an archive out: a directory with anything in it.

    Java 17 writes no archive for a class path holding one, and maps none written without it
    (measured: a ``spark-defaults.conf`` in ``SPARK_CONF_DIR`` left every run without an
    archive, and a run with it made the next run without it drop the archive it had)."""
    for name, entry in entries:
        try:
            if entry.is_dir() and any(entry.iterdir()):
                return name, entry
        except OSError:  # unreadable: the JVM cannot read it either
            continue
    return None


STALE_SECONDS = 600
"""A temporary archive untouched this long is left over: a JVM writes one in seconds at exit, and
the job promotes or removes it right after."""


def remove_stale(directory: Path, now: float | None = None) -> None:
    """Temporary archives left by a job that was killed while, or before, its JVM wrote them."""
    now = time.time() if now is None else now
    for partial in directory.glob("*.jsa.*.partial"):
        try:
            if now - partial.stat().st_mtime > STALE_SECONDS:
                partial.unlink()
        except FileNotFoundError:  # another job's, promoted or removed meanwhile
            continue


def plan(directory: Path, java: Path | None, classpath: list[Path], options: str,
         pid: int | None = None) -> ArchivePlan | None:
    """Map the archive for this JDK and classpath when there is one, else write it at exit;
    None without a ``java`` to key on, or a directory to keep archives in that can be written and
    named in a JVM option (Spark's launcher splits the options at spaces)."""
    if java is None:
        return None
    if any(char.isspace() or char in "'\"\\" for char in str(directory)):
        logger.warning("no JVM class archive: its directory %s holds spaces or quotes, which the JVM's options "
                       "cannot carry (set JVM_CLASS_ARCHIVE_DIR)", directory)
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale(directory)
    except OSError as exc:
        logger.warning("no JVM class archive (%s): the job starts without one", exc)
        return None
    path = directory / f"{archive_key(java, classpath, options)}.jsa"
    if path.is_file():
        try:
            os.utime(path)  # the newest used is the last removed (:func:`prune`)
        except OSError:  # someone else's file, or pruned just now: mapping it still works or is skipped
            pass
        return ArchivePlan(path)
    if not os.access(directory, os.W_OK):
        return None  # a JVM asked to write where it cannot fails at exit
    token = f"{socket.gethostname()}-{pid or os.getpid()}-{secrets.token_hex(4)}"
    return ArchivePlan(path, directory / f"{path.name}.{token}.partial")


def maps(java: Path, archive: Path) -> bool:
    """Whether a JVM starts with ``archive`` without crashing: one cut short in its body kills it
    with SIGBUS (its crash report goes to a temporary directory). Not a full check (a JVM that
    cannot use a file starts without it): the guarantee is the writer's orderly exit."""
    with tempfile.TemporaryDirectory(prefix="stockpulse-cds-check-") as scratch:
        try:
            result = subprocess.run([str(java), f"-XX:SharedArchiveFile={archive}", "-Xshare:auto",
                                     "-XX:-CreateCoredumpOnCrash", "-version"],
                                    capture_output=True, timeout=CHECK_TIMEOUT_SECONDS, cwd=scratch)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return result.returncode == 0


def prune(directory: Path, keep: int = KEEP) -> None:
    """Keep the ``keep`` most recently used archives."""
    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:  # another job pruned it first
            return 0.0

    for old in sorted(directory.glob("*.jsa"), key=used, reverse=True)[keep:]:
        old.unlink(missing_ok=True)


ORDERLY_EXITS = (0, 128 + signal.SIGTERM)
"""Exit codes of a JVM that ran its own shutdown (``System.exit`` when pyspark's gateway sees its
standard input close, or SIGTERM), which writes the archive before it exits (measured: SIGTERM
gives 143 and a whole archive). pyspark's JVM ignores SIGINT. A JVM killed outright (SIGKILL, a
crash) has another code and may have cut the file short."""


def promote(archive: ArchivePlan, java: Path, jvm_exit_code: int | None) -> bool:
    """Give a written archive its final name once the JVM that wrote it shut down in order and a
    fresh JVM maps it; remove it otherwise. True when it was promoted."""
    partial = archive.training
    if partial is None:
        return False
    if not partial.is_file():
        logger.warning("the JVM exited (%s) without writing its class archive: the next job writes it", jvm_exit_code)
        return False
    if jvm_exit_code in ORDERLY_EXITS and maps(java, partial):
        os.replace(partial, archive.path)
        prune(archive.path.parent)
        logger.info("wrote the JVM class archive %s: later jobs start faster", archive.path)
        return True
    partial.unlink(missing_ok=True)
    logger.warning("the JVM class archive was not written whole (JVM exit %s): the next job writes it again",
                   jvm_exit_code)
    return False


def mapped(pid: int, path: Path) -> bool | None:
    """Whether process ``pid`` maps ``path`` (None where ``/proc`` cannot tell). ``/proc`` shows
    the resolved path, so a symlinked cache directory is resolved first."""
    try:
        maps_text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    return str(path.resolve()) in maps_text


def report(archive: ArchivePlan | None, jvm_pid: int | None) -> None:
    """Say at start-up what the class archive does, and whether the JVM really mapped it.

    A JVM that cannot use an archive (its JDK or jars changed in a way the key missed) starts
    without it, with one ``[warning][cds`` line; that archive is then removed, so the next clean
    end writes one that fits.
    """
    if archive is None:
        return
    if archive.training is not None:
        logger.info("no JVM class archive for this JDK and these jars yet: the JVM writes one when the job "
                    "ends cleanly (once, ~200 MB in %s; JVM_CLASS_ARCHIVE=false turns this off)", archive.path.parent)
        return
    used = mapped(jvm_pid, archive.path) if jvm_pid else None
    if used:
        logger.info("the JVM maps its classes from %s", archive.path)
    elif used is False:
        archive.path.unlink(missing_ok=True)
        logger.warning("the JVM did not map the class archive %s (written for another JDK or other jars?): "
                       "removed; the next job that ends cleanly writes a new one", archive.path)


def _gateway():
    """(pyspark's py4j gateway, the JVM process it started); the process is None under
    spark-submit, and both are None before any SparkContext."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    return gateway, getattr(gateway, "proc", None)


def jvm_pid() -> int | None:
    """The driver JVM's pid when this process started it: pyspark's launcher execs into java, so
    its process is the JVM (None if a wrapper script kept it from being one)."""
    process = _gateway()[1]
    if process is None:
        return None
    try:
        return process.pid if Path(f"/proc/{process.pid}/exe").resolve().name.startswith("java") else None
    except OSError:
        return None


SIGTERM_BUDGET_SECONDS = 20
"""How long a job stopped by SIGTERM waits for its JVM to write the archive: supervisors send
SIGKILL after 30 s (``make down``), and waiting longer would lose the check, not the data."""


STOP_BUDGET_SECONDS = 4
"""How long a SIGTERM waits for the queries to stop before the JVM is let go: with
:data:`SIGTERM_BUDGET_SECONDS` it stays inside a supervisor's 30 s."""


def _stop_quietly(stop_job: Callable[[float], None]) -> None:
    try:
        stop_job(STOP_BUDGET_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the JVM goes either way; a cut batch is replayed
        logger.warning("the queries did not stop cleanly before the JVM's shutdown: %s", exc)


def finish_on_sigterm(archive: ArchivePlan | None, stop_job: Callable[[float], None] = lambda _budget: None) -> None:
    """While this job writes the archive, SIGTERM (``make down``, a supervisor) ends it through
    :func:`finish` and exits 143, instead of killing Python at once and leaving the file unchecked.

    ``stop_job`` runs first, given :data:`STOP_BUDGET_SECONDS`: it detaches the Python listener and
    stops the queries, so no listener event or ``foreachBatch`` call reaches a gateway that is
    shutting down (each would print a py4j stack trace). A batch it cuts short is not committed
    and is replayed by the next start.

    Only then: a job that maps an archive keeps dying on SIGTERM as before. The JVM, which ignores
    SIGTERM (:func:`keep_sigterm_from_jvm`), shuts down when its standard input closes and writes
    the archive; a SIGTERM to the whole process group reaches only this process.
    """
    if archive is None or archive.training is None:
        return

    def stop(signum, _frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        # On a thread of its own: the handler may have interrupted a py4j call of the main thread,
        # whose connection is still waiting for its answer; a new thread talks on a new one.
        stopper = threading.Thread(target=_stop_quietly, args=(stop_job,), name="stop-queries", daemon=True)
        stopper.start()
        stopper.join(STOP_BUDGET_SECONDS + 1)
        finish(archive, SIGTERM_BUDGET_SECONDS)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def finish(archive: ArchivePlan | None, timeout: float = EXIT_TIMEOUT_SECONDS) -> None:
    """After the job's end: let the JVM exit (it writes the archive as it does) and promote it.

    pyspark's gateway JVM exits when its standard input closes; waiting for it here is what makes
    a whole archive tell apart from one cut short. Nothing here may fail the job, whose data is
    committed by now: a problem costs the archive, with a warning. A second SIGTERM or a Ctrl-C
    while it waits gives the archive up.
    """
    if archive is None or archive.training is None:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while it waits ends it at once
    gateway, process = _gateway()
    java = java_binary()
    if process is None or java is None:
        return
    logger.info("waiting for the JVM to write its class archive (once; JVM_CLASS_ARCHIVE=false skips it)")
    try:
        # No gateway.shutdown(): it closes every connection at once, and a call still in flight
        # (py4j's finalizer thread releasing the Java objects the stop thread dropped) fails and
        # is logged, retried, with a stack trace. Marked disconnected, py4j sends nothing more; the
        # JVM, its standard input closed, answers what is in flight and exits.
        gateway._gateway_client.is_connected = False
        if process.stdin is not None:
            process.stdin.close()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Never leave it running: it would write a file nobody checks after this job is gone
            # (and a supervisor sees the job stopped while its JVM still works).
            process.kill()
            process.wait(timeout=30)
            archive.training.unlink(missing_ok=True)
            logger.warning("the JVM was still writing its class archive after %.0f s: stopped it; the next job "
                           "that ends cleanly writes it again", timeout)
            return
        promote(archive, java, code)
    except KeyboardInterrupt:
        archive.training.unlink(missing_ok=True)
        logger.warning("interrupted: no JVM class archive this time")
    except Exception as exc:  # noqa: BLE001 - see above: never fail a job over its archive
        logger.warning("the JVM class archive was not kept: %s", exc)


def keep_sigterm_from_jvm() -> None:
    """Start pyspark's JVM with SIGTERM ignored (as pyspark starts it with SIGINT ignored).

    ``make down`` and supervisors SIGTERM the job's whole process group, the JVM included. A JVM
    that handles it starts its own exit at once: Spark's shutdown hooks cancel the batch in flight,
    and the archive's linking and writing (15-28 s on a loaded machine, measured) race the
    driver's :func:`finish_on_sigterm`, whose py4j calls meet a dying gateway (stack traces) and
    whose wait ran out first, leaving the JVM behind to write a file nobody checked. Ignoring it,
    the JVM exits when the driver, having stopped the queries, closes its standard input; an
    ignored signal survives ``exec``, and HotSpot leaves an ignored SIGTERM ignored. SIGKILL to
    the group still ends it."""
    from pyspark import java_gateway

    popen = java_gateway.Popen
    if getattr(popen, "keeps_sigterm", False):
        return

    def launch(*args, preexec_fn=None, **kwargs):
        def child() -> None:
            if preexec_fn is not None:
                preexec_fn()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        return popen(*args, preexec_fn=child, **kwargs)

    launch.keeps_sigterm = True
    java_gateway.Popen = launch


def discard(archive: ArchivePlan | None) -> None:
    """After a failed job: stop its JVM before it spends ~15 s writing an archive nobody checks
    (and holds the caller's output open meanwhile), and remove the file."""
    if archive is None or archive.training is None:
        return
    process = _gateway()[1]
    if process is not None and process.poll() is None:
        process.kill()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    archive.training.unlink(missing_ok=True)
