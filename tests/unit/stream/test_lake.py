"""The lake janitor: which part files a committed batch names, and deleting the others."""

from __future__ import annotations

import json
from pathlib import Path

from stockpulse.stream.lake import committed_files, data_files, remove_uncommitted, uncommitted


def log_text(*entries: tuple[Path, str]) -> str:
    lines = ["v1"] + [json.dumps({"path": path.as_uri(), "size": 1, "isDir": False, "action": action})
                      for path, action in entries]
    return "\n".join(lines)


def write_lake(lake: Path, names: list[str]) -> list[Path]:
    files = []
    for name in names:
        path = lake / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PAR1")
        files.append(path)
    return files


def test_committed_files_unions_compacted_and_delta_logs_minus_deletes(tmp_path):
    a, b, c = (tmp_path / f"index=X/part-{n}.parquet" for n in "abc")
    compact = log_text((a, "add"), (b, "add"))
    delta = log_text((c, "add"), (b, "delete"))
    assert committed_files([compact, delta]) == {a, c}


def test_percent_encoded_partition_values_map_back_to_the_directory_on_disk(tmp_path):
    # Spark escapes ':' in a partition value as %3A on disk; the log's URI escapes that '%' again.
    on_disk = tmp_path / "index=A%3AB" / "part-0.parquet"
    assert committed_files([log_text((on_disk, "add"))]) == {on_disk}


def test_remote_entries_are_ignored():
    text = "v1\n" + json.dumps({"path": "s3a://bucket/lake/part-0.parquet", "action": "add"})
    assert committed_files([text]) == set()


def test_data_files_skip_metadata_and_hidden_entries(tmp_path):
    kept = write_lake(tmp_path, ["index=X/date=2020-01-01/part-0.parquet", "part-1.parquet"])
    write_lake(tmp_path, ["_spark_metadata/part-x", "index=X/.part-0.parquet.crc", "_temporary/part-2.parquet"])
    assert sorted(data_files(tmp_path)) == sorted(kept)


def test_uncommitted_is_what_no_log_entry_names(tmp_path):
    kept, stray = write_lake(tmp_path, ["index=X/part-0.parquet", "index=X/part-1.parquet"])
    assert uncommitted([kept, stray], {kept}) == [stray]


def test_remove_uncommitted_deletes_strays_and_their_empty_partitions(tmp_path):
    kept, stray, lonely = write_lake(tmp_path, [
        "index=X/date=2020-01-01/part-0.parquet",
        "index=X/date=2020-01-01/part-1.parquet",
        "index=Y/date=2020-01-02/part-2.parquet",
    ])
    (stray.parent / f".{stray.name}.crc").write_bytes(b"crc")
    log = tmp_path / "_spark_metadata"
    log.mkdir()
    (log / "0").write_text(log_text((kept, "add")))
    (log / ".0.crc").write_text("not a log file")

    assert remove_uncommitted(tmp_path) == sorted([stray, lonely])
    assert kept.exists() and not stray.exists() and not (stray.parent / f".{stray.name}.crc").exists()
    assert not (tmp_path / "index=Y").exists()


def test_without_a_sink_log_nothing_is_touched(tmp_path):
    (own,) = write_lake(tmp_path, ["part-0.parquet"])
    assert remove_uncommitted(tmp_path) == [] and own.exists()


def test_lakes_on_other_stores_are_left_alone():
    """Only local and s3a:// lakes are tidied (tests/integration/lakehouse/test_s3_lake.py covers S3)."""
    assert remove_uncommitted("hdfs://namenode/lake") == []
