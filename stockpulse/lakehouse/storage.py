"""Open a lake location (local path or ``s3a://`` URI) as a pyarrow filesystem and a path in it.

pyarrow's filesystems give the compaction job, the lake view and the lake's tidy-up one API for
local disk and S3 alike. S3 settings come from the standard AWS variables, read by the same pure
mapping the Spark job turns into ``fs.s3a.*`` (:mod:`stockpulse.stream.s3`), so the job and every
pyarrow reader always agree on the endpoint, the keys and the region: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (an S3-compatible store such as SeaweedFS; path-style
addressing then) and AWS_REGION.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from stockpulse.errors import ConfigError
from stockpulse.stream.s3 import S3Access, bucket_key, pyarrow_options

S3_SCHEMES = ("s3a", "s3", "s3n")
"""Spellings of S3 a location may use: Hadoop's s3a (the one Spark writes here) and the older ones
that name the same bucket and key."""

CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 60.0
"""pyarrow's S3 client waits without limit by default: a store that stopped answering would hang
the caller (a DAG task, the job's start) instead of failing with the endpoint's name."""


def s3_options(env: Mapping[str, str]) -> dict:
    """Keyword arguments of :class:`pyarrow.fs.S3FileSystem` from the AWS variables."""
    return {**pyarrow_options(S3Access.from_env(env)),
            "connect_timeout": CONNECT_TIMEOUT_SECONDS, "request_timeout": REQUEST_TIMEOUT_SECONDS}


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
