"""Opening a lake location as a pyarrow filesystem: local paths and s3a:// URIs."""

from __future__ import annotations

import os

import pytest
from pyarrow import fs as pafs

from stockpulse.errors import ConfigError
from stockpulse.lakehouse.storage import open_location, s3_options, split_location

SEAWEED = {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "SPKEY",
           "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-1"}


@pytest.mark.parametrize("location, expected", [
    ("/data/lake", ("", "/data/lake")),
    ("file:///data/lake%20x", ("", "/data/lake x")),
    ("s3a://stockpulse/lake/compacted", ("s3a", "stockpulse/lake/compacted")),
    ("s3a://stockpulse/lake/", ("s3a", "stockpulse/lake")),
    ("s3://bucket/key", ("s3", "bucket/key")),
    ("s3a://bucket", ("s3a", "bucket")),
])
def test_split_location(location, expected):
    assert split_location(location) == expected


@pytest.mark.parametrize("location", ["hdfs://namenode/lake", "gs://bucket/lake", "s3a:///no-bucket"])
def test_locations_this_cannot_open_are_config_errors(location):
    with pytest.raises(ConfigError):
        split_location(location)


def test_a_local_location_is_the_local_filesystem_with_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = open_location("lake/parquet", {})
    assert isinstance(fs, pafs.LocalFileSystem) and path == os.path.join(str(tmp_path), "lake/parquet")


def test_an_s3a_location_is_s3_at_the_endpoint_with_the_keys():
    fs, path = open_location("s3a://stockpulse/lake/parquet", SEAWEED)
    assert isinstance(fs, pafs.S3FileSystem) and path == "stockpulse/lake/parquet"
    options = fs.__reduce__()[1][0]  # what the filesystem was built with (no request is made)
    assert (options["endpoint_override"], options["scheme"], options["region"]) == ("127.0.0.1:8333", "http",
                                                                                     "eu-west-1")
    assert (options["access_key"], options["secret_key"]) == ("SPKEY", "secret")
    assert options["force_virtual_addressing"] is False


def test_without_an_endpoint_s3_options_are_aws_with_the_default_chain():
    options = s3_options({})
    assert options["region"] == "us-east-1"
    assert "endpoint_override" not in options and "access_key" not in options
