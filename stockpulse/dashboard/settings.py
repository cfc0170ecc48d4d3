"""The dashboard's settings, read from ``DASHBOARD_*`` environment variables.

The page reads PostgreSQL as a read-only role (``stockpulse_reader``, created by the last section
of ``postgres/init.sql``), so a bug in the page cannot change data. By default its URL is
``DATABASE_URL`` (or the embedded server's) with that role as the user; set
``DASHBOARD_DATABASE_URL`` when the reader needs a password or lives elsewhere.

The pipeline panel and the analytics view also look beyond PostgreSQL: at the broker and the
Spark checkpoints (consumer lag), the lake (its last committed batch) and the dbt marts' DuckDB
file. They read the pipeline's own variables (``KAFKA_*``, ``CHECKPOINT_DIR``, ``LAKE_PATH``,
``ANALYTICS_DUCKDB``) through the same settings classes as the pipeline, so the page looks where
the job writes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stockpulse.config import (READER_ROLE, ConsumerSettings, KafkaSettings, LakehouseSettings, PostgresSettings,
                               env_int, env_str, redact_url)
from stockpulse.errors import ConfigError

MAX_TICKS = 20_000
"""Upper bound of the "latest N ticks" window. A tick is one trading date (every index of that date
shares its ``stream_ts``), so this is up to 100,000 rows with five indices: more only slows the browser."""


def reader_url(url: str, role: str = READER_ROLE) -> str:
    """``url`` with its user (and any password) replaced by ``role``: the writer's secret is not reused."""
    return re.sub(r"^(postgres(?:ql)?://)(?:[^@/]*@)?", rf"\g<1>{role}@", url, count=1)


def sqlalchemy_url(url: str) -> str:
    """A libpq-style URL in SQLAlchemy's spelling for the psycopg 3 driver."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql+psycopg://", url, count=1)


def check_url(url: str, variable: str) -> None:
    """Parse ``url`` as the engine will, now: a typo such as ``:54x2`` is one line at start-up
    instead of a traceback from SQLAlchemy on the first refresh."""
    try:
        parsed = make_url(sqlalchemy_url(url))
    except ValueError:  # SQLAlchemy's int() of the port
        problem = "its port is not a number"
    except ArgumentError:
        problem = "SQLAlchemy cannot parse it"
    else:
        problem = None if parsed.port is None or 1 <= parsed.port <= 65535 else f"port {parsed.port} is not 1-65535"
    if problem:
        raise ConfigError(f"{variable}={redact_url(url)!r} is not a usable PostgreSQL URL: {problem} "
                          "(expected postgresql://user[:password]@host[:port]/database)")


@dataclass(frozen=True)
class DashboardSettings:
    database_url: str  # DASHBOARD_DATABASE_URL (unset: DATABASE_URL with user stockpulse_reader)
    port: int  # DASHBOARD_PORT
    refresh_seconds: int  # DASHBOARD_REFRESH_SECONDS
    default_ticks: int  # DASHBOARD_DEFAULT_TICKS
    bootstrap_servers: str = "127.0.0.1:9092"  # KAFKA_BOOTSTRAP_SERVERS (unset: the embedded broker)
    topic: str = "stock_ticks"  # KAFKA_TOPIC
    checkpoint_dir: str = "chk"  # CHECKPOINT_DIR: where the job's offsets are, for the consumer lag
    lake_path: str = "lake/parquet"  # LAKE_PATH: whose _spark_metadata tells the lake's last batch
    analytics_db: Path = Path("lake/analytics.duckdb")  # ANALYTICS_DUCKDB: the dbt marts

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, base_url: str | None = None) -> "DashboardSettings":
        """Validate every variable now, so a bad value is one clear line at start-up.

        ``base_url`` is the writer's URL when the caller already knows it (``make up`` does).
        """
        explicit = env_str(env, "DASHBOARD_DATABASE_URL", "")
        if explicit and not explicit.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"DASHBOARD_DATABASE_URL must start with postgresql:// (got {redact_url(explicit)!r})"
            )
        if explicit:
            check_url(explicit, "DASHBOARD_DATABASE_URL")
            url = explicit
        else:
            writer = base_url or PostgresSettings.from_env(env).url
            check_url(writer, "DATABASE_URL")
            url = reader_url(writer)
        port = env_int(env, "DASHBOARD_PORT", 8501, 1)
        if port > 65535:
            raise ConfigError(f"DASHBOARD_PORT={port} is not a TCP port (1-65535)")
        ticks = env_int(env, "DASHBOARD_DEFAULT_TICKS", 500, 10)
        if ticks > MAX_TICKS:
            raise ConfigError(f"DASHBOARD_DEFAULT_TICKS={ticks} is more than the page shows ({MAX_TICKS})")
        kafka, consumer = KafkaSettings.from_env(env), ConsumerSettings.from_env(env)
        return cls(
            database_url=url,
            port=port,
            refresh_seconds=env_int(env, "DASHBOARD_REFRESH_SECONDS", 5, 1),
            default_ticks=ticks,
            bootstrap_servers=kafka.bootstrap_servers,
            topic=kafka.topic,
            checkpoint_dir=consumer.checkpoint_dir,
            lake_path=consumer.lake_path,
            analytics_db=LakehouseSettings.from_env(env).analytics_db,
        )

    @property
    def engine_url(self) -> str:
        return sqlalchemy_url(self.database_url)
