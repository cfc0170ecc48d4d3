"""When the Parquet lake last committed a batch: the lake's freshness on the pipeline panel.

Spark's file sink records each committed batch as one file in ``<LAKE_PATH>/_spark_metadata/``
(``0``, ``1``, ..., ``N.compact``), written when the batch commits and never touched again, so the
newest file's modification time is the time of the last commit. Files in the lake itself would
not do: a batch killed mid-write leaves part files that no commit names.

Only a lake on this machine's disk is read. On an object store (``s3a://``) listing the log costs
a paid, slow request per refresh, so the panel says it is not shown there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import streamlit as st

from stockpulse.config import child, local_path

logger = logging.getLogger(__name__)

METADATA_DIR = "_spark_metadata"
LAKE_TTL_SECONDS = 10
"""A directory listing per viewer and refresh would be cheap, but not free on a big log."""


@dataclass(frozen=True)
class LakeCommit:
    """The lake's last commit (epoch seconds), or why there is none to show."""

    committed_at: float | None
    note: str | None = None


def newest_mtime(names_and_times: list[tuple[str, float]]) -> float | None:
    """The newest modification time among the commit log's entries (hidden files, such as the
    local file system's ``.N.crc`` checksums and Spark's temporary files, are skipped)."""
    times = [mtime for name, mtime in names_and_times if not name.startswith(".")]
    return max(times, default=None)


def last_commit(lake_path: str) -> LakeCommit:
    """The lake's last committed batch; never raises."""
    root = local_path(lake_path)
    if root is None:
        return LakeCommit(None, f"not shown for object stores ({lake_path})")
    log = root / METADATA_DIR
    try:
        found = _entries(log)
    except FileNotFoundError:
        return LakeCommit(None, f"no batch committed yet (no {child(str(root), METADATA_DIR)})")
    except OSError as exc:
        logger.warning("cannot list %s: %s", log, exc)
        return LakeCommit(None, f"cannot list {log}: {exc.strerror or exc}")
    newest = newest_mtime(found)
    return LakeCommit(newest, None if newest is not None else "no batch committed yet")


def _entries(log) -> list[tuple[str, float]]:
    found = []
    with os.scandir(log) as entries:
        for entry in entries:
            try:
                if entry.is_file():
                    found.append((entry.name, entry.stat().st_mtime))
            except FileNotFoundError:  # Spark removed an old log file while we listed
                continue
    return found


@st.cache_data(ttl=LAKE_TTL_SECONDS, show_spinner=False)
def cached_last_commit(lake_path: str) -> LakeCommit:
    return last_commit(lake_path)
