"""JVM dependencies from the Maven registry: the Apache Kafka broker, Spark's Kafka connector,
Hadoop's S3A filesystem (for ``s3a://`` lakes) and the PostgreSQL JDBC driver with the project's
own writer class (``jvm/postgres-copy``), compiled here against pyspark's jars.

Why Maven and not ``spark-submit --packages`` alone: the same resolver serves both the broker
(which Spark's Ivy cannot start) and the connector, honours the machine's Maven settings (a
mirror, a proxy), and its answer is a plain directory of jars that the next start reuses without
the network. The coordinates are pinned in ``jvm/<bundle>/pom.xml``; the resolved jars live in a
cache outside the repository (``STOCKPULSE_JAR_CACHE``, default ``~/.cache/stockpulse/jars``),
one directory per pom content, so changing a pin resolves again and nothing else does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from stockpulse.config import PROJECT_ROOT
from stockpulse.errors import ServiceError

logger = logging.getLogger(__name__)

JVM_DIR = PROJECT_ROOT / "jvm"
KAFKA_BROKER = "kafka-broker"
SPARK_KAFKA = "spark-kafka"
HADOOP_AWS = "hadoop-aws"
POSTGRES_COPY = "postgres-copy"
BUNDLES = (KAFKA_BROKER, SPARK_KAFKA, HADOOP_AWS, POSTGRES_COPY)
WRITER_JAR = "stockpulse-postgres-copy.jar"
WRITER_SOURCES = JVM_DIR / POSTGRES_COPY / "src" / "main" / "java"
COMPILE_TIMEOUT_SECONDS = 300
NO_JDK = ("compiling the JVM PostgreSQL writer needs a JDK (javac): run 'make sysdeps' or apt-get install "
          "openjdk-17-jdk-headless")
RESOLVE_TIMEOUT_SECONDS = 900
_COMPLETE = ".complete"
_VERSIONED = re.compile(r"^(?P<name>.+?)-\d+\.\d+[\w.]*(?:-[\w.]+)?\.jar$")  # name-1.2.3[-qualifier].jar


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where resolved jars are kept (STOCKPULSE_JAR_CACHE); shared by make up, tests and benchmarks."""
    configured = env.get("STOCKPULSE_JAR_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "stockpulse" / "jars"


def pom_of(bundle: str) -> Path:
    return JVM_DIR / bundle / "pom.xml"


def bundle_dir(bundle: str, root: Path) -> Path:
    """The cache directory of ``bundle``: named after its pom's content, so a new pin is a new dir."""
    digest = hashlib.sha256(pom_of(bundle).read_bytes()).hexdigest()[:12]
    return root / f"{bundle}-{digest}"


def pinned_version(bundle: str, artifact: str) -> str:
    """The version the pom pins for ``artifact`` (the README and the spark-submit line quote it)."""
    text = pom_of(bundle).read_text()
    match = re.search(rf"<artifactId>{re.escape(artifact)}</artifactId>\s*<version>([^<]+)</version>", text)
    if not match:
        raise ServiceError(f"{pom_of(bundle)} pins no version of {artifact}")
    return match.group(1)


def artifact_name(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``: what two versions of one library share."""
    match = _VERSIONED.match(jar)
    return match.group("name") if match else jar.removesuffix(".jar")


def cached_jars(bundle: str, root: Path | None = None) -> list[Path] | None:
    """The jars of ``bundle`` when a previous resolution completed, else None (no network used)."""
    directory = bundle_dir(bundle, root or cache_root())
    if not (directory / _COMPLETE).is_file():
        return None
    return sorted(directory.glob("*.jar"))


def maven_command() -> str:
    """``mvn``, installed with apt when missing (as the README's set-up promises)."""
    found = shutil.which("mvn")
    if found:
        return found
    logger.info("Maven is missing: installing it (apt) to resolve the JVM dependencies")
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "install_system_packages.sh"), "maven"],
                            capture_output=True, text=True)
    found = shutil.which("mvn")
    if result.returncode != 0 or not found:
        raise ServiceError(f"Maven (mvn) is needed to fetch the JVM dependencies and could not be installed: "
                           f"{((result.stderr or result.stdout).strip().splitlines() or ['apt failed'])[-1]}")
    return found


def _maven_error(output: str) -> str:
    """The line of Maven's output that says what went wrong (not the advice that follows it)."""
    errors = [line.split("[ERROR]", 1)[1].strip() for line in output.splitlines() if "[ERROR]" in line]
    errors = [e for e in errors if e and not e.startswith(("->", "Re-run", "To see", "For more", "[Help"))]
    return errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1]


def build_cached(target: Path, ready: Callable[[], bool], build: Callable[[Path], None], what: str,
                 timeout: int) -> None:
    """Build ``target`` once, whoever asks: ``build(staging)`` fills a temporary directory beside
    it, which is then renamed into place, so a killed build leaves nothing half done.

    Concurrent callers (a test session and ``make up``) serialise on a lock and the second finds
    ``ready()`` true. ``build`` raises :class:`ServiceError` to refuse; its staging is removed.
    """
    from stockpulse.locks import acquire_lock

    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(root / f".{what}.lock", timeout)
    if lock is None:
        raise ServiceError(f"another process has been building {what} for {timeout} s; remove {root} if it is stale")
    try:
        if ready():
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{what}-", dir=root))
        try:
            build(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        lock.close()


def resolve(bundle: str, root: Path | None = None) -> list[Path]:
    """The jars of ``bundle``, resolved from the Maven registry the first time and cached
    (:func:`build_cached`)."""
    root = root or cache_root()
    jars = cached_jars(bundle, root)
    if jars is not None:
        return jars
    target = bundle_dir(bundle, root)

    def download(staging: Path) -> None:
        logger.info("resolving %s from the Maven registry (%s), once; cached in %s", bundle, pom_of(bundle), target)
        command = [maven_command(), "-B", "-q", "-f", str(pom_of(bundle)), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"resolving {bundle} from the Maven registry took over {RESOLVE_TIMEOUT_SECONDS} s") from None
        if result.returncode != 0 or not any(staging.glob("*.jar")):
            raise ServiceError(f"cannot resolve {bundle} from the Maven registry: "
                               f"{_maven_error(result.stdout + result.stderr)}")
        (staging / _COMPLETE).write_text(" ".join(command[1:]) + "\n")

    build_cached(target, lambda: cached_jars(bundle, root) is not None, download, bundle, RESOLVE_TIMEOUT_SECONDS)
    return sorted(target.glob("*.jar"))


def pyspark_jar_names() -> set[str]:
    """Library names pyspark already ships in ``pyspark/jars`` (never load a second version)."""
    import pyspark

    return {artifact_name(jar.name) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}


def spark_kafka_jars(root: Path | None = None) -> list[Path]:
    """The official connector's jars that pyspark lacks (Hadoop, Scala, compression codecs are
    pyspark's own: a second copy on the classpath is a conflict waiting to happen)."""
    shipped = pyspark_jar_names()
    return [jar for jar in resolve(SPARK_KAFKA, root) if artifact_name(jar.name) not in shipped]


def hadoop_aws_jars(root: Path | None = None) -> list[Path]:
    """S3A and the AWS SDK bundle, without anything pyspark already ships (its Hadoop client)."""
    shipped = pyspark_jar_names()
    return [jar for jar in resolve(HADOOP_AWS, root) if artifact_name(jar.name) not in shipped]


def postgres_copy_jars(root: Path | None = None) -> list[Path]:
    """The JDBC driver and the project's COPY writer (:mod:`stockpulse.stream.sinks.jvm_copy`)."""
    if cached_jars(POSTGRES_COPY, root) is None and not shutil.which("javac"):
        raise ServiceError(NO_JDK)  # before any download: without javac the driver alone is no use
    shipped = pyspark_jar_names()
    driver = [jar for jar in resolve(POSTGRES_COPY, root) if artifact_name(jar.name) not in shipped]
    return [*driver, compiled_writer(driver, root)]


def _pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def writer_digest(sources: list[Path], classpath: list[Path]) -> str:
    """What the compiled writer depends on: its sources, pyspark's version and the driver's jars;
    any change compiles again into a new directory, and nothing else does."""
    import pyspark

    digest = hashlib.sha256(pyspark.__version__.encode())
    for path in [*sources, *classpath]:
        digest.update(path.name.encode())
        if path.suffix == ".java":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def compiled_writer(classpath: list[Path], root: Path | None = None) -> Path:
    """The writer's jar, compiled with ``javac`` against pyspark's own jars and ``classpath`` the
    first time and cached (:func:`build_cached`): the class must match the Spark it runs in, which
    a jar downloaded for some other Spark would not guarantee, and compiling needs nothing from
    the network."""
    import zipfile

    root = root or cache_root()
    sources = sorted(WRITER_SOURCES.rglob("*.java"))
    directory = root / f"{POSTGRES_COPY}-writer-{writer_digest(sources, classpath)}"
    jar = directory / WRITER_JAR
    if jar.is_file():
        return jar
    javac = shutil.which("javac")
    if not javac:
        raise ServiceError(NO_JDK)

    def compile_into(staging: Path) -> None:
        classes = staging / "classes"
        path = os.pathsep.join([str(_pyspark_jars_dir() / "*"), *map(str, classpath)])
        command = [javac, "-nowarn", "--release", "17", "-encoding", "UTF-8", "-cp", path, "-d", str(classes),
                   *map(str, sources)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            result = None
        if result is None or result.returncode != 0:
            detail = "timed out" if result is None else (result.stderr.strip().splitlines() or ["no output"])[0]
            raise ServiceError(f"compiling the JVM PostgreSQL writer failed: {detail}")
        with zipfile.ZipFile(staging / WRITER_JAR, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        shutil.rmtree(classes)
        logger.info("compiled the JVM PostgreSQL writer into %s", jar)

    build_cached(directory, jar.is_file, compile_into, f"{POSTGRES_COPY}-writer", COMPILE_TIMEOUT_SECONDS)
    return jar


def hadoop_aws_package() -> str:
    """The ``--packages`` coordinate of S3A matching pyspark's Hadoop (for spark-submit)."""
    return f"org.apache.hadoop:hadoop-aws:{pinned_version(HADOOP_AWS, 'hadoop-aws')}"


def spark_kafka_package() -> str:
    """The ``--packages`` coordinate of the connector matching the pinned pyspark."""
    return f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pinned_version(SPARK_KAFKA, 'spark-sql-kafka-0-10_2.13')}"


def main(argv: list[str] | None = None) -> int:
    """``python -m stockpulse.jars``: resolve every bundle now (``make jars``), print where;
    ``--postgres-writer`` prints only the PostgreSQL writer's jars, comma-separated, for
    ``spark-submit --jars``."""
    import sys

    from stockpulse import logs

    logs.configure()
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["--postgres-writer"]:
            print(",".join(str(jar) for jar in postgres_copy_jars()))
            return 0
        if args:
            print("usage: python -m stockpulse.jars [--postgres-writer]", file=sys.stderr)
            return 2
        for bundle in BUNDLES:
            found = resolve(bundle)
            print(f"{bundle}: {len(found)} jars in {found[0].parent}")
        print(f"postgres-copy writer: {postgres_copy_jars()[-1]}")
    except ServiceError as exc:
        print(f"jars: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
