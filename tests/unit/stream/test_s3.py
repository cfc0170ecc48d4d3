"""S3 from the AWS variables (Spark's fs.s3a.*, pyarrow's options), how the job's session gets
S3A, and the tidy-up of an s3a:// lake."""

from __future__ import annotations

import json

import pytest
from pyarrow import fs as pafs

from stockpulse.errors import ConfigError, ServiceError
from stockpulse.stream.lake import committed_objects, is_data_file, remove_uncommitted, remove_uncommitted_objects
from stockpulse.config import S3Settings, bucket_key, is_s3a
from stockpulse.stream.s3 import hadoop_conf, hadoop_conf_from_env

SEAWEED = {"AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "SPKEY",
           "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}


def test_an_s3_compatible_store_gets_path_style_plain_http_and_its_keys():
    assert hadoop_conf_from_env(SEAWEED) == {
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:8333",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.access.key": "SPKEY",
        "spark.hadoop.fs.s3a.secret.key": "s3cr3t-value",
    }


def test_https_endpoint_keeps_tls_and_region_follows_aws_region():
    conf = hadoop_conf(S3Settings.from_env({**SEAWEED, "AWS_ENDPOINT_URL": "https://minio.example:9000/",
                                          "AWS_REGION": "eu-west-1"}))
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://minio.example:9000"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"


def test_the_service_specific_endpoint_wins_and_default_region_is_read():
    access = S3Settings.from_env({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2",
                                "AWS_DEFAULT_REGION": "ap-south-1"})
    assert (access.endpoint_url, access.region) == ("http://b:2", "ap-south-1")


def test_plain_aws_sets_only_the_region_and_leaves_keys_to_the_default_chain():
    assert hadoop_conf(S3Settings.from_env({})) == {"spark.hadoop.fs.s3a.endpoint.region": "us-east-1"}
    assert S3Settings.from_env({}).secure


def test_temporary_keys_take_the_session_token_provider():
    conf = hadoop_conf(S3Settings.from_env({**SEAWEED, "AWS_SESSION_TOKEN": "tok"}))
    assert conf["spark.hadoop.fs.s3a.session.token"] == "tok"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("TemporaryAWSCredentialsProvider")


@pytest.mark.parametrize("env, named", [
    ({"AWS_ACCESS_KEY_ID": "k"}, "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_SECRET_ACCESS_KEY": "s"}, "AWS_ACCESS_KEY_ID"),
    ({"AWS_ENDPOINT_URL": "127.0.0.1:8333"}, "AWS_ENDPOINT_URL"),
    ({"AWS_ENDPOINT_URL_S3": "ftp://host"}, "AWS_ENDPOINT_URL_S3"),
])
def test_bad_settings_name_their_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        S3Settings.from_env(env)


def test_the_secret_never_shows_in_a_repr_or_a_log_line():
    access = S3Settings.from_env({**SEAWEED, "AWS_SESSION_TOKEN": "tok3n"})
    for text in (repr(access), access.describe()):
        assert "s3cr3t" not in text and "tok3n" not in text
    assert "127.0.0.1:8333" in access.describe()


def test_pyarrow_gets_the_same_endpoint_keys_and_bounded_waits():
    options = S3Settings.from_env(SEAWEED).pyarrow_options()
    assert {k: options[k] for k in ("endpoint_override", "scheme", "access_key", "secret_key", "region")} == {
        "endpoint_override": "127.0.0.1:8333", "scheme": "http", "access_key": "SPKEY",
        "secret_key": "s3cr3t-value", "region": "us-east-1"}
    assert options["force_virtual_addressing"] is False
    assert options["connect_timeout"] > 0 and options["request_timeout"] > 0
    pafs.S3FileSystem(**options)  # every option is one pyarrow knows


@pytest.mark.parametrize("location, expected", [
    ("s3a://bucket/lake/parquet", True), ("S3A://bucket/x", True), ("s3://bucket/x", False),
    ("/tmp/lake", False), ("file:///tmp/lake", False), ("hdfs://nn/lake", False),
])
def test_only_s3a_needs_s3a(location, expected):
    assert is_s3a(location) is expected


def test_bucket_key_takes_a_typed_location_literally_and_undoes_hadoops_escapes():
    assert bucket_key("s3a://bucket/lake/parquet/") == "bucket/lake/parquet"
    assert bucket_key("s3a://bucket/x%3Ay") == "bucket/x%3Ay"
    # Spark escapes ':' in a partition value as %3A in the key; the log's URI escapes that '%' again.
    assert bucket_key("s3a://bucket/lake/index=A%253AB/part-0.parquet", encoded=True) == \
        "bucket/lake/index=A%3AB/part-0.parquet"
    with pytest.raises(ConfigError):
        bucket_key("s3a:///no-bucket")


# -- the tidy-up of an s3a:// lake ----------------------------------------------------------------
def log_text(*entries: tuple[str, str]) -> str:
    return "\n".join(["v1", *(json.dumps({"path": f"s3a://{key}", "size": 1, "isDir": False, "action": action})
                              for key, action in entries)])


def test_committed_objects_are_adds_minus_deletes_and_ignore_local_entries():
    compact = log_text(("b/lake/index=X/part-a.parquet", "add"), ("b/lake/index=X/part-b.parquet", "add"))
    delta = log_text(("b/lake/index=X/part-c.parquet", "add"), ("b/lake/index=X/part-b.parquet", "delete"))
    local = "v1\n" + json.dumps({"path": "file:/tmp/lake/part-d.parquet", "action": "add"})
    assert committed_objects([compact, delta, local]) == {"b/lake/index=X/part-a.parquet",
                                                          "b/lake/index=X/part-c.parquet"}


@pytest.mark.parametrize("relative, expected", [
    (["index=X", "date=2020-01-01", "part-0.parquet"], True), (["part-1.parquet"], True),
    (["_spark_metadata", "part-x"], False), (["index=X", ".part-0.parquet.crc"], False),
    (["_temporary", "0", "part-2.parquet"], False), (["index=X", "other.parquet"], False), ([], False),
])
def test_what_counts_as_a_data_file(relative, expected):
    assert is_data_file(relative) is expected


def put(fs, path: str, data: bytes = b"PAR1") -> str:
    fs.create_dir(path.rsplit("/", 1)[0])
    with fs.open_output_stream(path) as out:
        out.write(data)
    return path


def test_strays_and_the_partitions_they_alone_filled_are_deleted():
    fs = pafs._MockFileSystem()
    kept = put(fs, "b/lake/index=X/date=1/part-0.parquet")
    stray = put(fs, "b/lake/index=X/date=1/part-1.parquet")
    lonely = put(fs, "b/lake/index=Y/date=2/part-2.parquet")
    put(fs, "b/lake/_spark_metadata/0", log_text((kept, "add")).encode())
    put(fs, "b/lake/_spark_metadata/.0.crc", b"not a log file")
    put(fs, "b/elsewhere/part-9.parquet")  # outside the lake

    assert remove_uncommitted_objects("s3a://b/lake", filesystem=fs) == sorted([stray, lonely])
    left = {info.path for info in fs.get_file_info(pafs.FileSelector("b", recursive=True))}
    assert kept in left and stray not in left and lonely not in left
    assert "b/lake/index=Y" not in left and "b/lake/index=X/date=1" in left and "b/elsewhere/part-9.parquet" in left


def test_without_a_sink_log_no_object_is_touched():
    fs = pafs._MockFileSystem()
    own = put(fs, "b/lake/part-0.parquet")
    assert remove_uncommitted_objects("s3a://b/lake", filesystem=fs) == []
    assert fs.get_file_info(own).type == pafs.FileType.File


def test_an_unreachable_store_is_one_clear_error_naming_it():
    env = {**SEAWEED, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # discard port: nothing listens
    with pytest.raises(ServiceError, match="127.0.0.1:9") as caught:
        remove_uncommitted("s3a://bucket/lake", env)
    assert "s3cr3t" not in str(caught.value)


def test_other_remote_lakes_are_left_alone():
    assert remove_uncommitted("hdfs://namenode/lake") == []


# -- how the job's session gets S3A -----------------------------------------------------------------
class FakeBuilder:
    def __init__(self):
        self.conf: dict[str, str] = {}

    def config(self, key: str, value: str) -> "FakeBuilder":
        self.conf[key] = value
        return self


class FakeConf(dict):
    def contains(self, key: str) -> bool:
        return key in self


def consumer(lake: str, checkpoints: str = "/tmp/chk"):
    from stockpulse.config import ConsumerSettings

    return ConsumerSettings.from_env({"LAKE_PATH": lake, "CHECKPOINT_DIR": checkpoints})


@pytest.fixture
def resolved(monkeypatch):
    from stockpulse import jars

    found = ["/cache/hadoop-aws-3.5.0.jar", "/cache/bundle-2.35.4.jar"]
    monkeypatch.setattr(jars, "hadoop_aws_jars", lambda root=None: found)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    for name, value in SEAWEED.items():
        monkeypatch.setenv(name, value)
    return found


def test_s3a_is_needed_only_for_s3a_locations():
    from stockpulse.stream.job import s3a_locations

    assert s3a_locations(consumer("/tmp/lake")) == []
    assert s3a_locations(consumer("s3a://b/lake")) == ["s3a://b/lake"]
    assert s3a_locations(consumer("/tmp/lake", "s3a://b/chk")) == ["s3a://b/chk"]


def test_on_this_machine_s3a_goes_on_the_class_path_in_place_with_its_settings(resolved):
    from stockpulse.stream.job import with_s3a

    builder, shipped = with_s3a(FakeBuilder(), FakeConf({"spark.driver.extraClassPath": "/mine.jar"}),
                                consumer("s3a://b/lake"), local=True)
    assert shipped == []  # never spark.jars: Spark would copy the 650 MB bundle into every job's temp dir
    assert builder.conf["spark.driver.extraClassPath"] == ":".join(["/mine.jar", *resolved])
    assert builder.conf["spark.executor.extraClassPath"] == ":".join(resolved)
    assert builder.conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"


def test_executors_elsewhere_get_the_jars_shipped_and_a_users_conf_wins(resolved):
    from stockpulse.stream.job import with_s3a

    conf = FakeConf({"spark.hadoop.fs.s3a.endpoint": "http://proxy:1"})
    builder, shipped = with_s3a(FakeBuilder(), conf, consumer("s3a://b/lake"), local=False)
    assert shipped == resolved and "spark.driver.extraClassPath" not in builder.conf
    assert "spark.hadoop.fs.s3a.endpoint" not in builder.conf


def test_spark_submit_with_packages_or_a_running_jvm_resolves_nothing(resolved, monkeypatch):
    from stockpulse.stream.job import s3a_jars

    assert s3a_jars(FakeConf({"spark.jars.packages": "org.apache.hadoop:hadoop-aws:3.5.0"})) == []
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    assert s3a_jars(FakeConf()) == []
