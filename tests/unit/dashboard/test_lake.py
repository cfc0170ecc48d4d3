"""The lake's last committed batch: the newest file of Spark's commit log, local lakes only."""

import os

from stockpulse.dashboard import lake


def test_the_newest_log_file_is_the_last_commit(tmp_path):
    log = tmp_path / "lake" / "_spark_metadata"
    log.mkdir(parents=True)
    for name, mtime in (("0", 1_000.0), ("9.compact", 3_000.0), ("10", 2_000.0), (".10.crc", 9_000.0)):
        (log / name).write_text("v1")
        os.utime(log / name, (mtime, mtime))
    assert lake.last_commit(str(tmp_path / "lake")) == lake.LakeCommit(3_000.0, None)


def test_hidden_files_do_not_count():
    assert lake.newest_mtime([(".0.crc", 5.0), ("0", 4.0)]) == 4.0
    assert lake.newest_mtime([(".tmp", 5.0)]) is None


def test_no_log_yet(tmp_path):
    found = lake.last_commit(str(tmp_path))
    assert found.committed_at is None and found.note.startswith("no batch committed yet")
    (tmp_path / "_spark_metadata").mkdir()
    assert lake.last_commit(str(tmp_path)) == lake.LakeCommit(None, "no batch committed yet")


def test_object_stores_are_not_listed():
    found = lake.last_commit("s3a://bucket/lake")
    assert found == lake.LakeCommit(None, "not shown for object stores (s3a://bucket/lake)")
