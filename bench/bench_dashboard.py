"""Measure the dashboard on a big table: does the page cost grow with the rows in ``ticks_raw``?

Usage: python bench/bench_dashboard.py [--rows 5000000] [--small-rows 10000] [--repeats 15]

Two databases on one private PostgreSQL (free port, temporary directory; a running ``make up`` is
untouched): a small one and a big one, both filled with synthetic ticks and ANALYZEd. For each,
every statement the page runs per refresh is timed (median and p95 over ``--repeats``), and the
whole page is rendered by Streamlit's AppTest (median of three, after a warm-up), as the reader
role. On the big table the "latest N" statement is also timed with index scans switched off, to
show what the index saves. Results go to ``bench/results/dashboard-<UTC time>.json`` and
``bench/results/dashboard-latest.json``; compare the big/small ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stockpulse import logs  # noqa: E402
from stockpulse.db import apply_init_sql, connect  # noqa: E402
from stockpulse.ops.services.postgres import EmbeddedPostgres  # noqa: E402
from stockpulse.ops.services.processes import free_port  # noqa: E402

logger = logging.getLogger("bench")

INDICES = ("HSI", "NYA", "IXIC", "GDAXI", "N225")
CHUNK = 1_000_000
"""Rows per INSERT ... SELECT, so the server's memory stays flat while seeding."""
RECENT = 60
"""Rows seeded as landed in the last minute, so the rate metric reads a non-empty range."""


def seed(url: str, rows: int) -> float:
    """Fill ``ticks_raw`` with ``rows`` rows, five indices sharing each ``stream_ts`` (one tick) as
    the producer sends them, ANALYZE; seconds taken."""
    started = time.monotonic()
    with connect(url, autocommit=True) as conn:
        for low in range(1, rows + 1, CHUNK):
            high = min(rows, low + CHUNK - 1)
            conn.execute(
                "INSERT INTO ticks_raw (stream_ts, date, index, open, high, low, close, adj_close, volume, "
                "close_usd, trade_value, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, landed_at) "
                "SELECT ts, DATE '2021-06-01' - (g / 5)::int %% 9000, idx, c, c + 1, c - 1, c, c, v, c, c * v, "
                "'bench', g %% 3, g, ts, "
                "now() - make_interval(secs => CASE WHEN g <= %(recent)s THEN 1 ELSE 120 + g / 5 END) "
                "FROM (SELECT g, now() - make_interval(secs => g / 5) AS ts, "
                "(%(indices)s::text[])[g %% 5 + 1] AS idx, (1000 + g %% 997)::numeric AS c, "
                "(1000 + g %% 50000)::bigint AS v FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g) AS t",
                {"recent": RECENT, "indices": list(INDICES), "low": low, "high": high},
            )
            logger.info("seeded %d / %d rows", high, rows)
        conn.execute("ANALYZE ticks_raw")
    return time.monotonic() - started


def _timed(fn, repeats: int) -> dict:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2)}


def time_queries(reader: str, repeats: int, default_ticks: int) -> dict:
    """Each statement of one page refresh, timed through the page's own query functions.

    "latest N" is N ticks: N distinct ``stream_ts``, so about 5N rows here.
    """
    from sqlalchemy import create_engine

    from stockpulse.dashboard import queries
    from stockpulse.dashboard.settings import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(reader))
    try:
        with engine.connect() as conn:
            results = {
                "metrics": _timed(lambda: queries.metrics(conn), repeats),
                "recent_indices": _timed(lambda: queries.recent_indices(conn), repeats),
                f"latest_{default_ticks}_all": _timed(lambda: queries.latest_ticks(conn, default_ticks), repeats),
                f"latest_{default_ticks}_two_indices": _timed(
                    lambda: queries.latest_ticks(conn, default_ticks, INDICES[:2]), repeats),
                "latest_20000_all": _timed(lambda: queries.latest_ticks(conn, 20_000), repeats),
            }
    finally:
        engine.dispose()
    return results


def time_latest_without_index(reader: str, default_ticks: int) -> dict:
    """The same "latest N" statement with index scans off: the cost the index spares each refresh."""
    from sqlalchemy import create_engine, text

    from stockpulse.dashboard import queries
    from stockpulse.dashboard.settings import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(reader))
    try:
        with engine.connect() as conn:
            conn.execute(text("SET enable_indexscan = off"))
            conn.execute(text("SET enable_bitmapscan = off"))
            conn.execute(text("SET enable_indexonlyscan = off"))
            return _timed(lambda: queries.latest_ticks(conn, default_ticks), 3)
    finally:
        engine.dispose()


def time_page(url: str, runs: int = 3) -> dict:
    """Whole-page renders by AppTest (settings from the environment, as the page reads them)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    os.environ.pop("DASHBOARD_DATABASE_URL", None)
    app = str(ROOT / "streamlit_app.py")

    def render():
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(app, default_timeout=300).run()
        if at.exception:
            raise RuntimeError(f"the page failed: {[e.value for e in at.exception]}")
        if len(at.get("vega_lite_chart")) < 4:
            raise RuntimeError("the page rendered fewer than four charts")

    render()  # warm-up: imports and first-use costs are not the table's
    return _timed(render, runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--default-ticks", type=int, default=500)
    args = parser.parse_args(argv)
    logs.configure()

    from stockpulse.dashboard.settings import reader_url

    work = Path(tempfile.mkdtemp(prefix="stockpulse-bench-dash-"))
    os.chmod(work, 0o755)
    server = EmbeddedPostgres(work / "pg", free_port(), work / "pg.log", work / "secrets" / "pgpass", database="postgres")
    result: dict = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "default_ticks": args.default_ticks,
    }
    try:
        server.start()
        tables = {}
        for label, rows in (("small", args.small_rows), ("big", args.rows)):
            admin = server.admin_url()
            with connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "bench_{label}" OWNER stockpulse')
            url = server.url_for(f"bench_{label}")
            apply_init_sql(url)
            seconds = seed(url, rows)
            reader = reader_url(url)
            logger.info("%s table (%d rows): timing the page's statements and the page", label, rows)
            tables[label] = {"rows": rows, "seed_seconds": round(seconds, 1),
                             "queries": time_queries(reader, args.repeats, args.default_ticks),
                             "page_render": time_page(url)}
            if label == "big":
                tables[label]["latest_without_index"] = time_latest_without_index(reader, args.default_ticks)
        result["tables"] = tables
        small, big = tables["small"], tables["big"]
        result["ratios"] = {
            "page_render_big_over_small": round(big["page_render"]["median_ms"] / small["page_render"]["median_ms"], 2),
            **{f"{name}_big_over_small": round(big["queries"][name]["median_ms"] / small["queries"][name]["median_ms"], 2)
               for name in big["queries"]},
            "latest_scan_over_index_on_big": round(
                big["latest_without_index"]["median_ms"]
                / big["queries"][f"latest_{args.default_ticks}_all"]["median_ms"], 1),
        }
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S%z")
    text = json.dumps(result, indent=2)
    (out_dir / f"dashboard-{stamp}.json").write_text(text + "\n")
    (out_dir / "dashboard-latest.json").write_text(text + "\n")
    logger.info("results in bench/results/dashboard-latest.json:\n%s", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
