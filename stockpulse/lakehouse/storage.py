"""Open a lake location (local path or ``s3a://`` URI) as a pyarrow filesystem and a path in it.

pyarrow's filesystems give the compaction job, the lake view and the lake's tidy-up one API for
local disk and S3 alike. S3 settings come from the standard AWS variables, read by the same
:class:`stockpulse.config.S3Settings` the Spark job turns into ``fs.s3a.*``, so the job and every
pyarrow reader always agree on the endpoint, the keys and the region: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (an S3-compatible store such as SeaweedFS; path-style
addressing then) and AWS_REGION.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from stockpulse.config import S3Settings, bucket_key, local_path
from stockpulse.errors import ConfigError

S3_SCHEMES = ("s3a", "s3", "s3n")
"""Spellings of S3 a location may use: Hadoop's s3a (the one Spark writes here) and the older ones
that name the same bucket and key."""


def s3_options(env: Mapping[str, str]) -> dict:
    """Keyword arguments of :class:`pyarrow.fs.S3FileSystem` from the AWS variables."""
    return S3Settings.from_env(env).pyarrow_options()


def split_location(location: str) -> tuple[str, str]:
    """``(scheme, path)``: ``("", "/abs/path")`` for local locations, ``("s3a", "bucket/key")`` for S3."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return "", unquote(parsed.path) if parsed.scheme else location
    if parsed.scheme in S3_SCHEMES:
        return parsed.scheme, bucket_key(location)
    raise ConfigError(f"{location}: only local paths and s3a:// locations can be compacted or read here")


def open_location(location: str, env: Mapping[str, str] = os.environ) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``location`` and the location's path in it (nothing is contacted yet)."""
    scheme, path = split_location(location)
    if not scheme:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    return pafs.S3FileSystem(**s3_options(env)), path


def duckdb_location(location: str) -> str:
    """``location`` (a local path or a URI, as :mod:`stockpulse.config` gives it) as DuckDB reads it.

    Spark writes ``s3a://``; DuckDB's httpfs understands ``s3://``. A ``file:`` URI becomes its path.
    """
    for scheme in S3_SCHEMES:
        if location.startswith(f"{scheme}://"):
            return "s3://" + location[len(scheme) + 3:]
    path = local_path(location)
    if path is None:
        raise ConfigError(f"{location!r}: DuckDB reads a local path or s3a:// / s3:// "
                          "only, not this scheme")
    return str(path)
