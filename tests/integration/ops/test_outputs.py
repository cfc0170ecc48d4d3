"""clear_outputs.py removes the lake and checkpoints, keeps .gitkeep, and can empty the tables."""

from stockpulse.db import connect
from tests.conftest import run_cli


def test_clear_outputs_with_truncate(pipeline_env, tmp_path):
    lake, chk = tmp_path / "lake", tmp_path / "chk"
    for d in (lake / "index=HSI", chk / "parquet" / "offsets", chk / "postgres"):
        d.mkdir(parents=True)
    (lake / "index=HSI" / "part.parquet").write_text("x")
    with connect(pipeline_env["DATABASE_URL"]) as conn:
        conn.execute("INSERT INTO ticks_dead_letter (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, reason)"
                     " VALUES ('t', 0, 0, now(), 'test')")
        conn.commit()

    refused = run_cli(["clear_outputs.py"], pipeline_env)  # no terminal, no --yes: must not delete
    assert refused.returncode == 2 and lake.exists()

    done = run_cli(["clear_outputs.py", "--yes", "--truncate"], pipeline_env)
    assert done.returncode == 0, done.stderr
    assert not lake.exists() and not (chk / "parquet").exists() and not (chk / "postgres").exists()
    with connect(pipeline_env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM ticks_dead_letter").fetchone()[0] == 0
