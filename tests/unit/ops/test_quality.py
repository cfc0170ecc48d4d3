"""Quality rules as SQL text and their report; the real-database check is in tests/integration."""

from __future__ import annotations

from stockpulse.ops.quality import CHECKS, count_sql, failures, sample_sql


def test_every_rule_of_the_issue_is_checked():
    assert CHECKS["trade_value_not_close_times_volume"] == "trade_value IS DISTINCT FROM close * volume"
    assert {"low_above_open", "low_above_close", "open_above_high", "close_above_high"} <= set(CHECKS)


def test_the_value_rules_of_the_schema_are_audited_too():
    from stockpulse.schema import BOUNDS

    assert CHECKS["close_is_not_positive"] == "close <= 0" and CHECKS["volume_is_negative"] == "volume < 0"
    assert len(BOUNDS) == 2


def test_counts_are_one_pass_over_the_landed_at_window():
    sql = count_sql()
    assert sql.count("FROM ticks_raw") == 1 and "landed_at <= %(until)s" in sql
    assert all(f"AS {name}" in sql for name in CHECKS)
    assert "LIMIT 10" in sample_sql()


def test_failures_list_only_checks_with_violations():
    assert failures({"low_above_open": 0, "close_above_high": 3}) == ["close_above_high: 3 rows"]
    assert failures({name: 0 for name in CHECKS}) == []
