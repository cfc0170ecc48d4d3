"""The analytics view (``?view=Analytics``) on a real DuckDB file holding the three dbt marts.

The file is written here as dbt leaves it (schema main, a handful of rows), and replaced by
rename as dbt does after each build.
"""

from __future__ import annotations

import json
import os

import duckdb
from streamlit import dataframe_util

from stockpulse.dashboard import marts
from tests.integration.dashboard.page import run_page
from tests.integration.dashboard_seed import write_marts

VIEW = "Analytics"


def chart_specs(at) -> list[dict]:
    """Each chart's spec, with the rows Streamlit ships beside it (as Arrow) under ``rows``."""
    specs = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        frame = dataframe_util.convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)
        spec["rows"] = frame.to_dict("records")
        specs.append(spec)
    return specs


def rows(spec: dict) -> list[dict]:
    return spec["rows"]


def test_before_dbt_ran_the_view_says_how_to_build_the_marts(page_env, tmp_path):
    at = run_page(VIEW)
    assert [i.value for i in at.info] == [
        "No analytics yet: the lake_compaction DAG builds them; run `python -m stockpulse.lakehouse.dbt_build`."]
    assert not at.get("vega_lite_chart") and not at.warning and not at.error


def test_the_marts_as_performance_volatility_and_yearly_share(page_env, tmp_path):
    path = tmp_path / "analytics.duckdb"
    write_marts(path)
    at = run_page(VIEW)
    assert not at.warning and not at.error and not at.info

    assert at.multiselect[0].options == ["HSI", "NYA"]  # GSPTSE is in dim_index, but never traded
    assert at.slider[0].value == (2019, 2020)
    perf, vol, share = chart_specs(at)
    nya = [r["rebased"] for r in rows(perf) if r["index"] == "NYA"]
    assert nya[0] == 100.0 and abs(nya[-1] - 100.0 * 1.1 ** 29) < 1e-6
    assert {r["index"] for r in rows(vol)} == {"HSI", "NYA"} and len(rows(vol)) == 2 * 10  # days 20..29 have one
    assert sorted((r["index"], r["year"], r["trade_value_usd_share"]) for r in rows(share)) == [
        ("HSI", 2019, 0.25), ("HSI", 2020, 0.25), ("NYA", 2019, 0.75), ("NYA", 2020, 0.75)]
    table = at.table[0].value.set_index("index")
    assert table["exchange"].str.replace("\\", "").to_dict() == {"HSI": "Hong Kong Stock Exchange",
                                                                 "NYA": "New York Stock Exchange"}
    assert table.loc["NYA", "latest date"] == "2020-01-18"
    assert table.loc["NYA", "close"] == f"{100 * 1.1 ** 29:,.2f}"

    # The page did not keep the file open: dbt (or anyone) may open it read-write right away.
    duckdb.connect(str(path)).close()

    at.multiselect[0].set_value(["NYA"]).run()
    assert not at.exception
    perf, vol, share = chart_specs(at)
    assert {r["index"] for r in rows(perf)} == {"NYA"} and {r["index"] for r in rows(share)} == {"NYA"}
    at.slider[0].set_value((2020, 2020)).run()
    perf, _, _ = chart_specs(at)
    assert rows(perf)[0]["rebased"] == 100.0  # re-anchored at NYA's first date of 2020
    assert str(rows(perf)[0]["date"].date()) == "2020-01-01"


def test_a_rebuilt_file_shows_at_the_next_refresh(page_env, tmp_path):
    """dbt builds into a new file and renames it over the old one: no restart, no stale marts."""
    path = tmp_path / "analytics.duckdb"
    write_marts(path)
    at = run_page(VIEW)
    assert at.table[0].value["region"].tolist() == ["Hong Kong", "United States"]
    rebuilt = tmp_path / "analytics.duckdb.building"
    write_marts(rebuilt, (("HSI", "Hong Kong", "Hong Kong Stock Exchange", "HKD"),
                          ("NYA", "USA", "New York Stock Exchange", "USD")))
    os.replace(rebuilt, path)
    at.run()
    assert not at.exception
    assert at.table[0].value["region"].tolist() == ["Hong Kong", "USA"]


def test_a_file_that_is_not_the_marts_is_one_line(page_env, tmp_path):
    path = tmp_path / "analytics.duckdb"
    path.write_bytes(b"not a duckdb file" * 100)
    at = run_page(VIEW)
    assert len(at.warning) == 1 and "cannot open the marts in" in at.warning[0].value
    assert "\n" not in at.warning[0].value and not at.get("vega_lite_chart")

    path.unlink()
    conn = duckdb.connect(str(path))
    conn.execute('CREATE TABLE main.dim_index ("index" VARCHAR)')  # an older or unfinished build
    conn.close()
    at = run_page(VIEW)
    assert len(at.warning) == 1 and "are not what the page reads" in at.warning[0].value
    assert marts.BUILD_COMMAND in at.warning[0].value
