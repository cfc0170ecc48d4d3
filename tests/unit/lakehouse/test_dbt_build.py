"""The dbt runner's pure parts: where DuckDB reads, what dbt is given, how a run is summed up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT
from stockpulse.errors import ConfigError
from stockpulse.lakehouse.dbt_build import (
    DBT_PROJECT,
    CompactedZoneEmpty,
    check_compacted_zone,
    dbt_command,
    dbt_environment,
    error_detail,
    failure_message,
    node_name,
    s3_settings,
    summarize,
    summary_line,
)
from stockpulse.lakehouse.storage import duckdb_location


@pytest.mark.parametrize("location, expected", [
    ("/data/lake/compacted", "/data/lake/compacted"),
    ("file:///data/lake%20x/compacted", "/data/lake x/compacted"),
    ("s3a://bucket/lake/compacted", "s3://bucket/lake/compacted"),
    ("s3n://bucket/c", "s3://bucket/c"),
    ("s3://bucket/c", "s3://bucket/c"),
])
def test_duckdb_reads_local_paths_and_s3_uris(location, expected):
    assert duckdb_location(location) == expected


def test_a_scheme_duckdb_cannot_read_is_a_config_error():
    with pytest.raises(ConfigError, match="'hdfs://nn/lake': DuckDB reads"):
        duckdb_location("hdfs://nn/lake")


@pytest.mark.parametrize("env, expected", [
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:8333"},
     {"s3_endpoint": "127.0.0.1:8333", "s3_use_ssl": "false", "s3_url_style": "path", "s3_region": "us-east-1"}),
    ({"AWS_ENDPOINT_URL": "https://minio.example:9000", "AWS_REGION": "eu-west-1"},
     {"s3_endpoint": "minio.example:9000", "s3_use_ssl": "true", "s3_url_style": "path", "s3_region": "eu-west-1"}),
    ({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2", "AWS_DEFAULT_REGION": "x"},
     {"s3_endpoint": "b:2", "s3_use_ssl": "false", "s3_url_style": "path", "s3_region": "x"}),
    ({}, {"s3_endpoint": "s3.amazonaws.com", "s3_use_ssl": "true", "s3_url_style": "vhost", "s3_region": "us-east-1"}),
])
def test_s3_settings_come_from_the_sdk_variables(env, expected):
    assert s3_settings(env) == expected


def test_a_bad_endpoint_is_a_config_error():
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL='ftp://x'"):
        s3_settings({"AWS_ENDPOINT_URL": "ftp://x"})


def test_dbt_gets_the_side_file_and_duckdb_location_and_keeps_the_rest():
    child = dbt_environment({"PATH": "/bin", "ANALYTICS_DUCKDB": "/old.duckdb"}, Path("/l/a.duckdb.building"),
                            "s3a://b/c", {"s3_endpoint": "h:1", "httpfs": "/x/httpfs.duckdb_extension"})
    assert child["PATH"] == "/bin"
    assert child["ANALYTICS_DUCKDB"] == "/l/a.duckdb.building"
    assert child["LAKE_COMPACTED_PATH"] == "s3://b/c"
    assert child["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"
    assert child["STOCKPULSE_DBT_S3_ENDPOINT"] == "h:1" and child["STOCKPULSE_DBT_HTTPFS"].endswith("extension")


def test_every_variable_the_s3_profile_reads_is_one_the_runner_sets():
    import re

    profile = (DBT_PROJECT / "profiles.yml").read_text()
    wanted = set(re.findall(r"env_var\('(STOCKPULSE_DBT_\w+)'", profile))
    given = dbt_environment({}, Path("/a.duckdb"), "s3://b/c",
                            {**s3_settings({"AWS_ENDPOINT_URL": "http://h:1"}), "httpfs": "/h", "extension_dir": "/e"})
    assert wanted and wanted == {key for key in given if key.startswith("STOCKPULSE_DBT_")}


def test_dbt_files_go_to_the_state_directory():
    command = dbt_command("local", Path("/state/dbt"))
    assert command[:4] == [sys.executable, "-m", "dbt.cli.main", "build"]
    assert command[command.index("--target-path") + 1] == "/state/dbt/target"
    assert command[command.index("--log-path") + 1] == "/state/dbt/logs"
    assert command[command.index("--profiles-dir") + 1] == str(PROJECT_ROOT / "analytics")


RESULTS = {"results": [
    {"unique_id": "model.stockpulse.stg_ticks", "status": "success"},
    {"unique_id": "seed.stockpulse.indexInfo", "status": "success"},
    {"unique_id": "test.stockpulse.not_null_stg_ticks_close.1a2b3c", "status": "pass"},
    {"unique_id": "test.stockpulse.relationships_fct_index_daily_index.9f", "status": "warn", "failures": 3},
    {"unique_id": "test.stockpulse.assert_trade_value_is_close_times_volume", "status": "fail", "failures": 2},
    {"unique_id": "model.stockpulse.fct_index_daily", "status": "error",
     "message": "Runtime Error in model fct_index_daily (models/marts/fct_index_daily.sql)\n"
                "  Conversion Error: Overflow in multiplication\n\nLINE 3: ..."},
    {"unique_id": "model.stockpulse.fct_volume_share", "status": "skipped"},
]}


def test_node_names():
    assert node_name("test.stockpulse.unique_x.1a2b") == ("test", "unique_x")
    assert node_name("model.stockpulse.fct_index_daily") == ("model", "fct_index_daily")


def test_a_run_is_counted_by_kind_and_outcome():
    assert summarize(RESULTS) == {
        "models_passed": 1, "models_failed": 1, "seeds_passed": 1, "seeds_failed": 0, "tests_passed": 1,
        "tests_failed": 1, "tests_warned": 1, "skipped": 1,
        "warnings": ["relationships_fct_index_daily_index"]}


def test_the_failure_line_names_each_failing_test_and_model():
    assert failure_message(RESULTS, []) == (
        "dbt build failed: test assert_trade_value_is_close_times_volume failed (2 rows); "
        "model fct_index_daily: Conversion Error: Overflow in multiplication (1 nodes skipped)")


def test_without_results_the_failure_line_is_dbts_own_error():
    output = ["03:32:27  Running with dbt=1.11.16", "03:32:27  Encountered an error:",
              "03:32:27  Parsing Error", "03:32:27    Invalid test config given in models/x.yml", "  more"]
    assert failure_message(None, output) == "dbt build failed: Parsing Error: Invalid test config given in models/x.yml"
    assert failure_message(None, ["03:32:27  something odd"]) == "dbt build failed: something odd"
    assert failure_message(None, []) == "dbt build failed: no output"


def test_error_detail_skips_dbts_header():
    assert error_detail("Runtime Error in seed indexInfo (seeds/indexInfo.csv)\n  bad row 3") == "bad row 3"
    assert error_detail("Database Error\n  x") == "Database Error"
    assert error_detail(None) == "no message"


def test_summary_line():
    line = summary_line({"models_passed": 5, "seeds_passed": 1, "tests_passed": 38, "warnings": ["rel_x"],
                         "rows": {"dim_index": 14, "fct_index_daily": 641}, "seconds": 12.34})
    assert line == ("dbt build: 5 models, 1 seed, 38 tests passed, 1 warned (rel_x); "
                    "dim_index 14 rows, fct_index_daily 641 rows; 12.3 s")


def test_an_empty_or_missing_zone_is_refused(tmp_path):
    with pytest.raises(CompactedZoneEmpty, match="does not exist"):
        check_compacted_zone(str(tmp_path / "nowhere"))
    (tmp_path / "_compaction").mkdir()
    (tmp_path / "_compaction" / "e.json").write_text("{}")
    with pytest.raises(CompactedZoneEmpty, match="holds no Parquet file yet"):
        check_compacted_zone(str(tmp_path))
    (tmp_path / "index=HSI" / "year=2020").mkdir(parents=True)
    (tmp_path / "index=HSI" / "year=2020" / "part-0.parquet").write_bytes(b"")
    check_compacted_zone(str(tmp_path))


def test_the_seed_is_the_shipped_index_list_without_bom_or_crlf():
    shipped = (PROJECT_ROOT / "data" / "indexInfo.csv").read_bytes().decode("utf-8-sig").splitlines()
    seed = (DBT_PROJECT / "seeds" / "indexInfo.csv").read_bytes()
    assert not seed.startswith(b"\xef\xbb\xbf") and b"\r" not in seed
    assert seed.decode().splitlines() == shipped
