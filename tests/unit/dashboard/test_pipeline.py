"""The pipeline panel's tables from plain values: batch-job runs, dead letters, sink freshness."""

from datetime import datetime, timedelta, timezone

import pandas as pd

from stockpulse.dashboard import pipeline, queries
from stockpulse.dashboard.queries import JobRun
from stockpulse import job_runs

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


def test_the_panel_reports_every_job_the_recorder_writes():
    assert tuple(pipeline.JOBS) == job_runs.JOBS


def test_job_rows_success_failure_running_and_never():
    runs = {
        "lake_compaction": JobRun("lake_compaction", NOW - timedelta(minutes=30), NOW - timedelta(minutes=29),
                                  "success", {"partitions": 3, "rows": 50568, "dry_run": False}, None),
        "dbt_build": JobRun("dbt_build", NOW - timedelta(seconds=90), None, "running", {}, None),
    }
    rows = pipeline.job_rows(runs, NOW).set_index("job")
    compaction = rows.loc["lake compaction"]
    assert compaction["status"] == ":green[success]"
    assert compaction["started (UTC)"] == "2026-11-22 11:30:00 (30 min ago)"
    assert compaction["took"] == "60 s"
    assert compaction["summary"].replace("\\", "") == "partitions: 3, rows: 50,568, dry_run: False"
    dbt = rows.loc["dbt build"]
    assert (dbt["status"], dbt["took"]) == (":orange[running]", "90 s so far")

    failed = {"dbt_build": JobRun("dbt_build", NOW - timedelta(hours=3), NOW - timedelta(hours=3) + timedelta(seconds=4),
                                  "failed", {}, "Compilation Error in model fct_index_daily")}
    rows = pipeline.job_rows(failed, NOW).set_index("job")
    assert rows.loc["dbt build", "status"] == ":red[failed]"
    assert rows.loc["dbt build", "error"].replace("\\", "") == "Compilation Error in model fct_index_daily"
    assert rows.loc["lake compaction", "status"] == "never ran"


def test_dead_letters_are_shown_escaped_and_cut_short():
    hostile = "[x](javascript:alert(1))\n" + "A" * 500
    latest = pd.DataFrame([(NOW, "stock_ticks", 2, 41, "not valid JSON", hostile),
                           (NOW - timedelta(seconds=5), "stock_ticks", 0, 7, "close must be > 0", None)],
                          columns=list(queries.DEAD_LETTER_COLUMNS))
    rows = pipeline.dead_letter_rows(latest)
    assert list(rows.columns) == list(pipeline.DEAD_LETTER_SHOWN)
    raw = rows.loc[0, "raw value (start)"]
    assert raw.startswith("\\[x\\]\\(javascript\\:alert\\(1\\)\\)\\\\n")  # inert link, the newline shown as \n
    assert raw.endswith("…") and len(raw.replace("\\", "")) <= pipeline.RAW_VALUE_SHOWN + 1
    assert rows.loc[1, "raw value (start)"] == "(none)"
    assert rows.loc[0, "landed (UTC)"] == "2026-11-22 12:00:00"
    assert (rows.loc[0, "partition"], rows.loc[0, "offset"]) == (2, 41)
    assert rows.loc[0, "topic"] == "stock\\_ticks"


def test_freshness_reads_as_an_age_or_says_why_not():
    assert pipeline.freshness(12.7) == "12 s"
    assert pipeline.freshness(None) == "–"
    assert pipeline.freshness(None, "not shown for object stores (s3a://b/lake)") == "not shown"


def test_seconds_since_the_last_row_is_counted_on_the_databases_clock():
    facts = queries.PipelineFacts(0, False, pd.DataFrame(), {}, NOW - timedelta(seconds=42), NOW)
    assert facts.seconds_since_last_row == 42.0
    assert queries.PipelineFacts(0, False, pd.DataFrame(), {}, None, NOW).seconds_since_last_row is None
