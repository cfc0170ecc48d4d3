"""Settings for every component, read from environment variables with defaults that work on a laptop.

Each field's comment names its variable; the README's environment table lists the same names.
When ``KAFKA_BOOTSTRAP_SERVERS`` or ``DATABASE_URL`` is unset the project runs its own embedded
broker or PostgreSQL on loopback; when set, it starts nothing and uses what it is given.
Validation happens here, at start-up, so a bad value fails with one clear line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, unquote, urlparse

from stockpulse.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """Setting ``name`` with surrounding blanks removed; empty or unset gives ``default``."""
    value = env.get(name, "")
    return value.strip() if value.strip() else default


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """Whole-number setting ``name``; a bad value is a :class:`ConfigError` naming the variable."""
    raw = env_str(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env_str(env, name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    path = Path(env_str(env, name, default))
    return path if path.is_absolute() else PROJECT_ROOT / path


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _location(env: Mapping[str, str], name: str, default: str) -> str:
    """A storage location Spark understands: a URI (``s3a://``, ``hdfs://``) kept verbatim, or an
    absolute local path (relative ones are taken from the project root).

    A ``pathlib.Path`` would fold ``s3a://bucket`` into ``s3a:/bucket``, which is why locations
    are strings and only :func:`local_path` turns them into paths.
    """
    raw = env_str(env, name, default)
    if _URI.match(raw):
        return raw.rstrip("/")
    path = Path(raw)
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def local_path(location: str) -> Path | None:
    """The local directory behind ``location``; ``None`` when it lives elsewhere (S3, HDFS, ...)."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return None if _URI.match(location) else Path(location)


def child(location: str, name: str) -> str:
    """``location``/``name`` without mangling a URI's ``//``."""
    return f"{location.rstrip('/')}/{name}"


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str  # KAFKA_BOOTSTRAP_SERVERS (unset: embedded broker on 127.0.0.1:KAFKA_EMBEDDED_PORT)
    topic: str  # KAFKA_TOPIC
    partitions: int  # KAFKA_TOPIC_PARTITIONS, used when the project creates the topic
    embedded: bool  # true when KAFKA_BOOTSTRAP_SERVERS is unset
    embedded_port: int  # KAFKA_EMBEDDED_PORT
    embedded_controller_port: int = 9093  # KAFKA_EMBEDDED_CONTROLLER_PORT (the KRaft controller listener)
    embedded_heap: str = "512m"  # KAFKA_EMBEDDED_HEAP: the embedded broker's JVM heap (-Xms/-Xmx)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "KafkaSettings":
        port = env_int(env, "KAFKA_EMBEDDED_PORT", 9092, 1)
        controller_port = env_int(env, "KAFKA_EMBEDDED_CONTROLLER_PORT", 9093, 1)
        if controller_port == port:
            raise ConfigError(f"KAFKA_EMBEDDED_CONTROLLER_PORT={controller_port} must differ from KAFKA_EMBEDDED_PORT")
        heap = env_str(env, "KAFKA_EMBEDDED_HEAP", "512m").lower()
        if not re.fullmatch(r"\d+[mg]", heap):
            raise ConfigError(f"KAFKA_EMBEDDED_HEAP={heap!r}: use a JVM size such as 512m or 1g")
        external = env_str(env, "KAFKA_BOOTSTRAP_SERVERS", "")
        topic = env_str(env, "KAFKA_TOPIC", "stock_ticks")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
            raise ConfigError(f"KAFKA_TOPIC={topic!r} is not a valid Kafka topic name")
        return cls(
            bootstrap_servers=external or f"127.0.0.1:{port}",
            topic=topic,
            partitions=env_int(env, "KAFKA_TOPIC_PARTITIONS", 3, 1),
            embedded=not external,
            embedded_port=port,
            embedded_controller_port=controller_port,
            embedded_heap=heap,
        )


EMBEDDED_DATABASE = "stocks"
PIPELINE_ROLE = "stockpulse"
"""The embedded server's role the pipeline writes as: it owns the database and its tables, and is
not a superuser (set-up runs as a separate superuser, ``stockpulse_admin``)."""
READER_ROLE = "stockpulse_reader"
"""The dashboard's read-only role: the embedded server's set-up creates it, ``postgres/init.sql``
grants it SELECT (and creates it on a server where the pipeline's role may)."""


def embedded_url(port: int, passfile: Path, user: str = PIPELINE_ROLE, database: str = EMBEDDED_DATABASE) -> str:
    """A URL for the embedded server whose password libpq reads from ``passfile`` (a pgpass file,
    mode 0600), so no password appears in a URL, an environment variable or a log line."""
    # percent-encoded: libpq refuses a space in a URL, SQLAlchemy reads '+' as a space
    return f"postgresql://{user}@127.0.0.1:{port}/{database}?passfile={quote(str(passfile), safe='/')}"


POSTGRES_WRITERS = ("auto", "jvm", "python")
"""How the job writes PostgreSQL: ``jvm`` COPYs from Spark's executors (the JDBC driver and the
project's writer class, ``jvm/postgres-copy``), ``python`` collects each batch to the driver and
COPYs with psycopg; ``auto`` takes ``jvm`` when its jars can be had, else ``python``."""


@dataclass(frozen=True)
class PostgresSettings:
    url: str  # DATABASE_URL (unset: embedded server on 127.0.0.1:PG_EMBEDDED_PORT, database stocks)
    embedded: bool
    embedded_port: int  # PG_EMBEDDED_PORT
    passfile: Path  # <STOCKPULSE_STATE_DIR>/secrets/pgpass: the embedded server's passwords
    retry_seconds: int  # POSTGRES_RETRY_SECONDS: how long the sink retries a batch while the server is away
    writer: str = "auto"  # POSTGRES_WRITER: auto | jvm (COPY from the executors) | python (COPY from the driver)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "PostgresSettings":
        port = env_int(env, "PG_EMBEDDED_PORT", 5432, 1)
        external = env_str(env, "DATABASE_URL", "")
        if external and not external.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"DATABASE_URL must start with postgresql:// (got {redact_url(external)!r})"
            )
        passfile = StatePaths(_path(env, "STOCKPULSE_STATE_DIR", ".state")).pgpass
        writer = env_str(env, "POSTGRES_WRITER", "auto").lower()
        if writer not in POSTGRES_WRITERS:
            raise ConfigError(f"POSTGRES_WRITER={writer!r}: use {', '.join(POSTGRES_WRITERS)}")
        return cls(
            url=external or embedded_url(port, passfile),
            embedded=not external,
            embedded_port=port,
            passfile=passfile,
            retry_seconds=env_int(env, "POSTGRES_RETRY_SECONDS", 120),
            writer=writer,
        )


PARTITION_COLUMN_CHOICES = ("index", "date")


PARQUET_SINK, POSTGRES_SINK = "parquet", "postgres"
SINKS = (PARQUET_SINK, POSTGRES_SINK)
"""The job's two sinks: each has its own query (``ticks_to_<sink>``) and checkpoint (``<CHECKPOINT_DIR>/<sink>``)."""


def query_name(sink: str) -> str:
    """The streaming query that writes ``sink``: what Spark's progress reports and the heartbeat call it."""
    return f"ticks_to_{sink}"


DEFAULT_MAX_OFFSETS_PER_TRIGGER = 100_000
"""Records per micro-batch at most: the PostgreSQL sink holds one batch in the driver (Arrow, then
CSV for COPY), so a backlog of millions must not arrive as one batch. 100k is ~2 s of work here."""

DEFAULT_FIRST_BATCH_OFFSETS = 5_000
"""Records in a job's first micro-batch at most: it runs cold (JIT, class loading), and a small
one lands the first rows of a backlog in about half the time (:mod:`stockpulse.stream.first_batch`)."""


@dataclass(frozen=True)
class ConsumerSettings:
    master: str  # SPARK_MASTER
    lake_path: str  # LAKE_PATH: local path or URI (s3a://, hdfs://)
    checkpoint_dir: str  # CHECKPOINT_DIR (holds parquet/ and postgres/): local path or URI
    partition_by: tuple[str, ...]  # LAKE_PARTITION_BY, comma-separated subset of index,date
    trigger_interval: str  # TRIGGER_INTERVAL, e.g. "5 seconds": the PostgreSQL query's (and the lake's by default)
    max_offsets_per_trigger: int  # MAX_OFFSETS_PER_TRIGGER (0: no limit; default bounds driver memory)
    starting_offsets: str  # STARTING_OFFSETS: earliest | latest | JSON
    fail_on_data_loss: bool  # FAIL_ON_DATA_LOSS
    kafka_source: str  # KAFKA_SOURCE: auto | builtin | python
    shuffle_partitions: int  # SPARK_SHUFFLE_PARTITIONS
    min_partitions: int = 0  # KAFKA_MIN_PARTITIONS: Spark tasks per micro-batch at least (0: one per Kafka partition)
    class_archive: bool = True  # JVM_CLASS_ARCHIVE: map Spark's classes from an archive the first run writes
    class_archive_dir: Path | None = None  # JVM_CLASS_ARCHIVE_DIR (default: class-archives/ in the jar cache)
    lake_trigger_interval: str = ""  # LAKE_TRIGGER_INTERVAL (default: TRIGGER_INTERVAL)
    first_batch_offsets: int = DEFAULT_FIRST_BATCH_OFFSETS  # FIRST_BATCH_OFFSETS: the first batch cap (0: none)

    @property
    def lake_trigger(self) -> str:
        """The lake query's interval: its own when set, else the job's."""
        return self.lake_trigger_interval or self.trigger_interval

    def trigger_of(self, sink: str) -> str:
        """The processing-time interval of ``sink``'s query."""
        return self.lake_trigger if sink == PARQUET_SINK else self.trigger_interval

    def checkpoint(self, sink: str) -> str:
        """The checkpoint location of ``sink``'s query."""
        return child(self.checkpoint_dir, sink)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ConsumerSettings":
        partition_by = tuple(
            c.strip() for c in env_str(env, "LAKE_PARTITION_BY", "index,date").split(",") if c.strip()
        )
        if partition_by == ("none",):
            partition_by = ()
        unknown = [c for c in partition_by if c not in PARTITION_COLUMN_CHOICES]
        if unknown or len(set(partition_by)) != len(partition_by):
            raise ConfigError(
                f"LAKE_PARTITION_BY={','.join(partition_by)!r}: use a comma-separated subset of "
                f"{','.join(PARTITION_COLUMN_CHOICES)}, or none"
            )
        source = env_str(env, "KAFKA_SOURCE", "auto").lower()
        if source not in ("auto", "builtin", "python"):
            raise ConfigError(f"KAFKA_SOURCE={source!r}: use auto, builtin or python")
        trigger = _interval(env, "TRIGGER_INTERVAL", "5 seconds")
        return cls(
            master=env_str(env, "SPARK_MASTER", "local[2]"),
            lake_path=_location(env, "LAKE_PATH", "lake/parquet"),
            checkpoint_dir=_location(env, "CHECKPOINT_DIR", "chk"),
            partition_by=partition_by,
            trigger_interval=trigger,
            max_offsets_per_trigger=env_int(env, "MAX_OFFSETS_PER_TRIGGER", DEFAULT_MAX_OFFSETS_PER_TRIGGER),
            starting_offsets=env_str(env, "STARTING_OFFSETS", "earliest"),
            fail_on_data_loss=_bool(env, "FAIL_ON_DATA_LOSS", True),
            kafka_source=source,
            shuffle_partitions=env_int(env, "SPARK_SHUFFLE_PARTITIONS", 4, 1),
            min_partitions=env_int(env, "KAFKA_MIN_PARTITIONS", 0),
            class_archive=_bool(env, "JVM_CLASS_ARCHIVE", True),
            class_archive_dir=_path(env, "JVM_CLASS_ARCHIVE_DIR", "") if env.get("JVM_CLASS_ARCHIVE_DIR") else None,
            lake_trigger_interval=_interval(env, "LAKE_TRIGGER_INTERVAL", trigger),
            first_batch_offsets=env_int(env, "FIRST_BATCH_OFFSETS", DEFAULT_FIRST_BATCH_OFFSETS),
        )


_INTERVAL = re.compile(r"(\d+)\s+(millisecond|minute)s?|(\d+(?:\.\d+)?)\s+seconds?", re.IGNORECASE)
"""What Spark's trigger takes (checked against pyspark 4.2): a space before a whole unit word, and
a fraction on seconds only; '5s', '500ms', '5 s' and '1.5 minutes' are refused when the query
starts."""
_UNIT_SECONDS = {"millisecond": 0.001, "minute": 60.0}


def interval_seconds(value: str) -> float:
    """A processing-time interval that :func:`_interval` accepted, in seconds ('5 seconds' and
    '5000 milliseconds' are the same interval)."""
    matched = _INTERVAL.fullmatch(value.strip())
    if matched is None:
        raise ValueError(f"not a processing-time interval: {value!r}")
    whole, unit, seconds = matched.groups()
    return float(seconds) if seconds is not None else int(whole) * _UNIT_SECONDS[unit.lower()]


def _interval(env: Mapping[str, str], name: str, default: str) -> str:
    """A Spark processing-time interval such as '5 seconds' or '500 milliseconds', checked here so
    a typo is a config error at once, not a failed query after the JVM started."""
    value = env_str(env, name, default)
    if not _INTERVAL.fullmatch(value):
        raise ConfigError(f"{name}={value!r}: use a number and a unit, e.g. '5 seconds', '500 milliseconds' "
                          "or '10 minutes'")
    return value


@dataclass(frozen=True)
class LakehouseSettings:
    """Where the lake's later layers live: the compacted zone and the dbt marts (issue 14)."""

    raw_path: str  # LAKE_PATH: the raw zone the streaming job writes
    compacted_path: str  # LAKE_COMPACTED_PATH: the compaction job's output, read by dbt
    min_age_seconds: int  # COMPACTION_MIN_AGE_SECONDS: a partition this quiet is closed
    delete_grace_seconds: int  # COMPACTION_DELETE_GRACE_SECONDS: compacted raw files are deleted this much later
    analytics_db: Path  # ANALYTICS_DUCKDB: the DuckDB file dbt builds the marts in

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "LakehouseSettings":
        raw = _location(env, "LAKE_PATH", "lake/parquet")
        compacted = _location(env, "LAKE_COMPACTED_PATH", "lake/compacted")
        if raw == compacted or raw.startswith(compacted + "/") or compacted.startswith(raw + "/"):
            # compaction removes Parquet files no log names from its zone, and the job from the lake:
            # zones that overlap would delete each other's files
            raise ConfigError(f"LAKE_COMPACTED_PATH={compacted} and LAKE_PATH={raw} overlap: "
                              "give the compacted zone a location of its own (e.g. lake/compacted beside lake/parquet)")
        if env_str(env, "LAKE_STORE", "local").lower() == "s3" and not _URI.match(raw):
            raise ConfigError("LAKE_STORE=s3 but LAKE_PATH is a local path: `make up` gives the jobs it starts the "
                              "store's locations and keys; by hand, take them first with "
                              "eval \"$(.venv/bin/python -m stockpulse.ops.stack env)\"")
        return cls(
            raw_path=raw,
            compacted_path=compacted,
            min_age_seconds=env_int(env, "COMPACTION_MIN_AGE_SECONDS", 600),
            delete_grace_seconds=env_int(env, "COMPACTION_DELETE_GRACE_SECONDS", 300),
            analytics_db=_path(env, "ANALYTICS_DUCKDB", "lake/analytics.duckdb"),
        )


@dataclass(frozen=True)
class ProducerSettings:
    """How ``make up`` runs the producer (by hand, its command-line options say the same)."""

    tick_interval: float  # PRODUCER_TICK_INTERVAL, seconds between ticks
    loop: bool  # PRODUCER_LOOP: start again at the end of the file
    resume: bool  # PRODUCER_RESUME: skip rows the topic already holds
    start_date: str | None  # PRODUCER_START_DATE (YYYY-MM-DD); set but empty: the whole history
    delivery_timeout: int = 120  # PRODUCER_DELIVERY_TIMEOUT_SECONDS: a send unacknowledged this long has failed

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ProducerSettings":
        raw_interval = env_str(env, "PRODUCER_TICK_INTERVAL", "1.0")
        try:
            interval = float(raw_interval)
        except ValueError:
            raise ConfigError(f"PRODUCER_TICK_INTERVAL={raw_interval!r} is not a number of seconds") from None
        if interval < 0:
            raise ConfigError(f"PRODUCER_TICK_INTERVAL={interval} must not be negative")
        start = env.get("PRODUCER_START_DATE")
        start = "1997-07-02" if start is None else start.strip() or None
        if start is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", start):
            raise ConfigError(f"PRODUCER_START_DATE={start!r}: use YYYY-MM-DD, or empty for the whole history")
        return cls(interval, _bool(env, "PRODUCER_LOOP", False), _bool(env, "PRODUCER_RESUME", True), start,
                   env_int(env, "PRODUCER_DELIVERY_TIMEOUT_SECONDS", 120, 2))


@dataclass(frozen=True)
class StatePaths:
    """What lives where in the state directory (``STOCKPULSE_STATE_DIR``): the one place every
    module asks, so ``make up``, ``make down``, Airflow and the job always agree on a path."""

    root: Path

    @property
    def run(self) -> Path:
        """pid files, locks, markers."""
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def postgres_data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def secrets(self) -> Path:
        """Mode 0700: the embedded PostgreSQL's passwords, nothing another local user may read."""
        return self.root / "secrets"

    @property
    def pgpass(self) -> Path:
        return self.secrets / "pgpass"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def cluster(self) -> Path:
        """``make cluster-up``'s Kafka nodes and Spark daemons, and ``cluster.env``."""
        return self.root / "cluster"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


@dataclass(frozen=True)
class ClusterSettings:
    """``make cluster-up``: a three-node Kafka cluster and a Spark standalone master with two
    workers on this machine (ports only; their state lives under ``<state>/cluster``)."""

    kafka_base_port: int  # CLUSTER_KAFKA_BASE_PORT: brokers on base..base+2, controllers on base+100..base+102
    topic_partitions: int  # CLUSTER_TOPIC_PARTITIONS
    spark_master_port: int  # CLUSTER_SPARK_MASTER_PORT
    spark_ui_port: int  # CLUSTER_SPARK_UI_PORT: the master's UI; the workers' on the next two ports
    worker_cores: int  # CLUSTER_WORKER_CORES
    worker_memory: str  # CLUSTER_WORKER_MEMORY

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ClusterSettings":
        memory = env_str(env, "CLUSTER_WORKER_MEMORY", "1536m")
        if not re.fullmatch(r"\d+[mMgG]", memory):
            raise ConfigError(f"CLUSTER_WORKER_MEMORY={memory!r}: use e.g. 1536m or 2g")
        return cls(
            kafka_base_port=env_int(env, "CLUSTER_KAFKA_BASE_PORT", 19092, 1),
            topic_partitions=env_int(env, "CLUSTER_TOPIC_PARTITIONS", 6, 1),
            spark_master_port=env_int(env, "CLUSTER_SPARK_MASTER_PORT", 7077, 1),
            spark_ui_port=env_int(env, "CLUSTER_SPARK_UI_PORT", 18080, 1),
            worker_cores=env_int(env, "CLUSTER_WORKER_CORES", 1, 1),
            worker_memory=memory,
        )


def is_s3a(location: str) -> bool:
    """True for an ``s3a://`` location (the S3 scheme Hadoop's S3A connector serves)."""
    return urlparse(str(location)).scheme.lower() == "s3a"


def bucket_key(location: str, encoded: bool = False) -> str:
    """``s3a://bucket/some/key/`` -> ``bucket/some/key``, the path pyarrow's S3 filesystem uses.

    A location a user typed is taken literally, as Hadoop takes it; ``encoded`` is for URIs Hadoop
    wrote itself (the sink log's entries), whose ``%`` escapes must be undone to find the key.
    """
    parsed = urlparse(location)
    if not parsed.netloc:
        raise ConfigError(f"{location}: an S3 location needs a bucket (s3a://bucket/prefix)")
    return f"{parsed.netloc}{unquote(parsed.path) if encoded else parsed.path}".rstrip("/")


@dataclass(frozen=True)
class S3Settings:
    """Where S3 is and who we are there, from the variables every AWS tool reads, so one exported
    set serves Spark's S3A, pyarrow, DuckDB and the AWS CLI alike. Keys unset: each client's default
    chain (instance profile, ``~/.aws``) finds them. The secret never shows in a repr or a log line."""

    region: str = "us-east-1"  # AWS_REGION, else AWS_DEFAULT_REGION
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL: an S3-compatible store
    access_key: str | None = None  # AWS_ACCESS_KEY_ID
    secret_key: str | None = field(default=None, repr=False)  # AWS_SECRET_ACCESS_KEY
    session_token: str | None = field(default=None, repr=False)  # AWS_SESSION_TOKEN (temporary keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "S3Settings":
        def get(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        endpoint_name = "AWS_ENDPOINT_URL_S3" if get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
        endpoint = get(endpoint_name)
        if endpoint and (urlparse(endpoint).scheme not in ("http", "https") or not urlparse(endpoint).hostname):
            raise ConfigError(f"{endpoint_name}={endpoint!r}: use a URL such as http://127.0.0.1:8333")
        access_key, secret_key = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
        if bool(access_key) != bool(secret_key):
            missing = "AWS_SECRET_ACCESS_KEY" if access_key else "AWS_ACCESS_KEY_ID"
            raise ConfigError(f"{missing} is unset while its partner is set: set both, or neither")
        return cls(get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "us-east-1",
                   endpoint.rstrip("/") if endpoint else None, access_key, secret_key, get("AWS_SESSION_TOKEN"))

    @property
    def secure(self) -> bool:
        """TLS unless the endpoint says ``http://`` (AWS itself is always https)."""
        return self.endpoint_url is None or urlparse(self.endpoint_url).scheme == "https"

    def describe(self) -> str:
        """For a log line: where, which region, whose keys; never the secret."""
        keys = f"access key {self.access_key[:4]}..." if self.access_key else "the default credential chain"
        return f"{self.endpoint_url or 'AWS'}, region {self.region}, {keys}"

    def pyarrow_options(self) -> dict:
        """Keyword arguments of ``pyarrow.fs.S3FileSystem``: path-style at an endpoint, and bounded
        waits (pyarrow's default is none: a store that stopped answering would hang its caller)."""
        options: dict = {"region": self.region, "connect_timeout": 10.0, "request_timeout": 60.0}
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme, force_virtual_addressing=False)
        if self.access_key:
            options.update(access_key=self.access_key, secret_key=self.secret_key)
            if self.session_token:
                options["session_token"] = self.session_token
        return options


LAKE_STORES = ("local", "s3")
S3_LAKE_BUCKET = "stockpulse"
S3_LAKE_LOCATIONS = {"LAKE_PATH": f"s3a://{S3_LAKE_BUCKET}/lake/parquet",
                     "LAKE_COMPACTED_PATH": f"s3a://{S3_LAKE_BUCKET}/lake/compacted"}
S3_LAKE_CHECKPOINT_DIR = "chk/s3"
"""``LAKE_STORE=s3``'s checkpoints, local as ever: a checkpoint names the batches its lake holds,
so a new lake with the old checkpoints would miss every row those batches wrote (``cluster.env``
keeps its own for the same reason)."""


@dataclass(frozen=True)
class LakeStoreSettings:
    """``LAKE_STORE=s3``: ``make up`` runs SeaweedFS on loopback and keeps the lake in its bucket.

    A ``LAKE_PATH`` that is already ``s3a://`` (other than the embedded store's own, which ``make
    up`` exports to what it starts) names a store of the user's (AWS, MinIO, ...), reached with the
    AWS variables: then nothing is started.
    """

    store: str  # LAKE_STORE: local | s3
    seaweedfs_port: int  # SEAWEEDFS_PORT: its S3 API; its other servers on the next four ports, gRPC +10000
    embedded: bool  # LAKE_STORE=s3 and LAKE_PATH not another s3a:// store: the project runs SeaweedFS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "LakeStoreSettings":
        store = env_str(env, "LAKE_STORE", "local").lower()
        if store not in LAKE_STORES:
            raise ConfigError(f"LAKE_STORE={store!r}: use {' or '.join(LAKE_STORES)}")
        port = env_int(env, "SEAWEEDFS_PORT", 8333, 1)
        if port + 4 + 10_000 > 65_535:
            raise ConfigError(f"SEAWEEDFS_PORT={port}: SeaweedFS also takes the next four ports and each one "
                              "+10000 (gRPC); use a port below 55531")
        lake = _location(env, "LAKE_PATH", "lake/parquet")
        users_store = lake.lower().startswith("s3a://") and lake != S3_LAKE_LOCATIONS["LAKE_PATH"]
        return cls(store, port, store == "s3" and not users_store)


@dataclass(frozen=True)
class StackSettings:
    """Every setting of the stack, read once by an entry point (``make up``, a DAG task, the job)
    and passed down: where ``make up`` keeps its state, and each component's settings."""

    state_dir: Path  # STOCKPULSE_STATE_DIR
    kafka: KafkaSettings = field(default_factory=KafkaSettings.from_env)
    postgres: PostgresSettings = field(default_factory=PostgresSettings.from_env)
    producer: ProducerSettings = field(default_factory=ProducerSettings.from_env)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings.from_env)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "StackSettings":
        return cls(
            state_dir=_path(env, "STOCKPULSE_STATE_DIR", ".state"),
            kafka=KafkaSettings.from_env(env),
            postgres=PostgresSettings.from_env(env),
            producer=ProducerSettings.from_env(env),
            consumer=ConsumerSettings.from_env(env),
        )

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.state_dir)


def redact_url(url: str) -> str:
    """The URL with any password replaced, so it can be logged or shown on the dashboard: the
    ``user:password@`` form and libpq's ``?password=`` query parameter alike."""
    hidden = re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", hidden, flags=re.IGNORECASE)
