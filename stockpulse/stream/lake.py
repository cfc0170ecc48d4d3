"""Keep the Parquet lake exact for every reader, not only for Spark.

Spark's file sink writes a micro-batch's Parquet files straight into the partition directories
and only then records them in ``_spark_metadata``. Spark's own reader lists files through that
log, so a batch killed half-way is invisible to it; pyarrow, DuckDB or pandas list directories
instead and would count the killed batch's files *and* the files of its replay. Before the job
starts, :func:`remove_uncommitted` deletes part files that no committed batch names, so after a
restart every reader sees each row once.

This assumes what Spark's checkpoint already assumes: one job writes a given lake at a time.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

METADATA_DIR = "_spark_metadata"

WRITE_OPTIONS = {"parquet.enable.dictionary": "false"}
"""How the job writes the lake's Parquet files. Prices, offsets and timestamps are nearly all
distinct, so Parquet's dictionary encoding is built for each column and then abandoned; off, a
partitioned write took 0.64x the time and the files came out no larger (measured on 100k ticks,
``docs/performance.md``)."""
_LOG_FILE = re.compile(r"\d+(\.compact)?")


def committed_files(log_texts: Iterable[str]) -> set[Path]:
    """Local paths of the files the sink log lists as added and not later deleted.

    Each log file is a version line (``v1``) followed by one JSON entry per file; ``N.compact``
    files repeat every earlier entry, so a plain union over all files is the committed set.
    """
    added: set[Path] = set()
    deleted: set[Path] = set()
    for text in log_texts:
        for line in text.splitlines()[1:]:
            if not line.strip():
                continue
            entry = json.loads(line)
            uri = urlparse(entry["path"])
            if uri.scheme not in ("", "file"):
                continue
            path = Path(unquote(uri.path))
            (deleted if entry.get("action") == "delete" else added).add(path)
    return added - deleted


def data_files(lake: Path) -> list[Path]:
    """Part files under ``lake``, skipping ``_``/``.`` entries as Spark's reader does."""
    found = []
    for path in lake.rglob("part-*"):
        relative = path.relative_to(lake).parts
        if path.is_file() and not any(p.startswith(("_", ".")) for p in relative):
            found.append(path)
    return found


def uncommitted(files: Iterable[Path], committed: set[Path]) -> list[Path]:
    """The files no committed batch names (compared by resolved path)."""
    keep = {p.resolve() for p in committed}
    return sorted(f for f in files if f.resolve() not in keep)


def remove_uncommitted(lake_location: str | Path) -> list[Path]:
    """Delete the part files a killed batch left behind; returns what was deleted.

    Only local lakes are tidied (an ``s3a://`` or ``hdfs://`` lake is left to Spark's reader),
    and only when the sink log exists: without it nothing tells a stray file from a user's own.
    """
    location = str(lake_location)
    scheme = urlparse(location).scheme
    if scheme not in ("", "file"):
        logger.info("lake %s is not local: leaving uncommitted files to Spark's reader", location)
        return []
    lake = Path(unquote(urlparse(location).path)) if scheme == "file" else Path(location)
    log_dir = lake / METADATA_DIR
    if not log_dir.is_dir():
        return []
    texts = [p.read_text() for p in log_dir.iterdir() if _LOG_FILE.fullmatch(p.name)]
    stray = uncommitted(data_files(lake), committed_files(texts))
    for path in stray:
        path.unlink()
        path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
        parent = path.parent
        while parent != lake and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    if stray:
        logger.warning("removed %d Parquet file(s) of a batch that never committed (the job was killed mid-write); "
                       "Spark rewrites that batch now", len(stray))
    return stray
