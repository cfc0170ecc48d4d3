"""Keep the Parquet lake exact for every reader, not only for Spark.

Spark's file sink writes a micro-batch's Parquet files straight into the partition directories
and only then records them in ``_spark_metadata``. Spark's own reader lists files through that
log, so a batch killed half-way is invisible to it; pyarrow, DuckDB or pandas list directories
instead and would count the killed batch's files *and* the files of its replay. Before the job
starts, :func:`remove_uncommitted` deletes part files that no committed batch names, so after a
restart every reader sees each row once.

The same holds for an ``s3a://`` lake, where a killed batch's objects stay listed just the same:
there the log and the objects are read and deleted through pyarrow's S3 filesystem, with the
standard AWS variables (:class:`stockpulse.config.S3Settings`). Other remote lakes (``hdfs://``) are left
to Spark's reader.

This assumes what Spark's checkpoint already assumes: one job writes a given lake at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from stockpulse.config import S3Settings, bucket_key, is_s3a

logger = logging.getLogger(__name__)

METADATA_DIR = "_spark_metadata"

WRITE_OPTIONS = {"parquet.enable.dictionary": "false"}
"""How the job writes the lake's Parquet files. Prices, offsets and timestamps are nearly all
distinct, so Parquet's dictionary encoding is built for each column and then abandoned; off, a
partitioned write took 0.64x the time and the files came out no larger (measured on 100k ticks,
``docs/performance.md``)."""
_LOG_FILE = re.compile(r"\d+(\.compact)?")


def log_entries(log_texts: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """``(uri, deleted)`` for every entry of the sink log's files.

    Each log file is a version line (``v1``) followed by one JSON entry per file; ``N.compact``
    files repeat every earlier entry, so a plain union over all files is the committed set.
    """
    for text in log_texts:
        for line in text.splitlines()[1:]:
            if line.strip():
                entry = json.loads(line)
                yield entry["path"], entry.get("action") == "delete"


def committed_files(log_texts: Iterable[str]) -> set[Path]:
    """Local paths of the files the sink log lists as added and not later deleted."""
    added: set[Path] = set()
    deleted: set[Path] = set()
    for location, removed in log_entries(log_texts):
        uri = urlparse(location)
        if uri.scheme not in ("", "file"):
            continue
        (deleted if removed else added).add(Path(unquote(uri.path)))
    return added - deleted


def committed_objects(log_texts: Iterable[str]) -> set[str]:
    """``bucket/key`` of the ``s3a://`` objects the sink log lists as added and not later deleted
    (the form pyarrow's S3 filesystem lists them in)."""
    added: set[str] = set()
    deleted: set[str] = set()
    for location, removed in log_entries(log_texts):
        if is_s3a(location):
            (deleted if removed else added).add(bucket_key(location, encoded=True))
    return added - deleted


def is_data_file(relative: Sequence[str]) -> bool:
    """A part file, by its path's parts below the lake; ``_``/``.`` entries are skipped at any
    depth, as Spark's reader skips them (``_spark_metadata``, ``_temporary``, ``.crc`` files)."""
    return bool(relative) and relative[-1].startswith("part-") and not any(
        p.startswith(("_", ".")) for p in relative)


def data_files(lake: Path) -> list[Path]:
    """Part files under ``lake``, skipping ``_``/``.`` entries as Spark's reader does."""
    return [path for path in lake.rglob("part-*")
            if path.is_file() and is_data_file(path.relative_to(lake).parts)]


def uncommitted(files: Iterable[Path], committed: set[Path]) -> list[Path]:
    """The files no committed batch names (compared by resolved path)."""
    keep = {p.resolve() for p in committed}
    return sorted(f for f in files if f.resolve() not in keep)


def remove_uncommitted(lake_location: str | Path, env: Mapping[str, str] = os.environ) -> list[Path | str]:
    """Delete the part files a killed batch left behind; returns what was deleted.

    Local and ``s3a://`` lakes are tidied (``env`` holds the AWS variables for the latter); other
    remote lakes (``hdfs://``) are left to Spark's reader. Only when the sink log exists: without
    it nothing tells a stray file from a user's own.
    """
    location = str(lake_location)
    if is_s3a(location):
        return remove_uncommitted_objects(location, env)
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


def remove_uncommitted_objects(location: str, env: Mapping[str, str] = os.environ, filesystem=None) -> list[str]:
    """:func:`remove_uncommitted` for an ``s3a://`` lake: the same rule, through pyarrow's S3
    filesystem (``filesystem`` replaces it in tests); returns the deleted objects' ``bucket/key``.

    A store that cannot be reached is a :class:`ServiceError` naming it: the job would fail on
    its first write anyway, later and less clearly.
    """
    from stockpulse.errors import ServiceError

    root = bucket_key(location)
    try:
        if filesystem is None:
            import pyarrow.fs as pafs

            filesystem = pafs.S3FileSystem(**S3Settings.from_env(env).pyarrow_options())
        return _remove_stray_objects(filesystem, root)
    except OSError as exc:
        raise ServiceError(f"cannot tidy the lake {location} ({S3Settings.from_env(env).describe()}): "
                           f"{str(exc).strip().splitlines()[0]}; check AWS_ENDPOINT_URL and the keys") from None


def _remove_stray_objects(fs, root: str) -> list[str]:
    import pyarrow.fs as pafs

    log_dir = f"{root}/{METADATA_DIR}"
    if fs.get_file_info(log_dir).type != pafs.FileType.Directory:
        return []
    texts = []
    for info in fs.get_file_info(pafs.FileSelector(log_dir)):
        if info.type == pafs.FileType.File and _LOG_FILE.fullmatch(info.base_name):
            with fs.open_input_stream(info.path) as stream:
                texts.append(stream.read().decode())
    committed = committed_objects(texts)
    listing = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    files = [info.path for info in listing
             if info.type == pafs.FileType.File and is_data_file(info.path[len(root) + 1:].split("/"))]
    stray = sorted(set(files) - committed)
    for path in stray:
        fs.delete_file(path)
    # Partition "directories" a stray alone filled: gone by themselves on S3 unless a marker object
    # holds them; such an empty marker would still show up as an empty partition to a lister.
    parents = {path.rsplit("/", 1)[0] for path in stray}
    for directory in sorted(parents, key=lambda d: d.count("/"), reverse=True):
        while directory != root and directory.startswith(f"{root}/"):
            if fs.get_file_info(directory).type != pafs.FileType.Directory or \
                    fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                break
            fs.delete_dir(directory)
            directory = directory.rsplit("/", 1)[0]
    if stray:
        logger.warning("removed %d Parquet object(s) of a batch that never committed (the job was killed "
                       "mid-write) from s3a://%s; Spark rewrites that batch now", len(stray), root)
    return stray
