"""The page in a real browser while the pipeline streams: producer -> broker -> Spark -> PostgreSQL.

Debian's chromium, driven by Playwright (no browser download), loads the dashboard that the
``make up`` service code starts, waits for the four charts to render, then watches the
"Rows in ticks_raw" metric grow between refreshes of the live fragment, without reloading the page.
Then, in the same page, it switches the price views to stream time, opens the pipeline panel (the
real job's lag and lake, seeded dead letters and batch-job runs) and the analytics view (a DuckDB
marts file written here). One server, one browser. Screenshots of each view (and the live view
in dark mode, as the viewer's system may prefer) are kept in test-artifacts/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stockpulse.config import PROJECT_ROOT, StackSettings
from stockpulse.ops.services import dashboard, processes
from tests.integration.dashboard_seed import DEAD_LETTERS, insert_dead_letters, insert_job_run, write_marts
from tests.integration.helpers import csv_slice

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FIRST_CHARTS_MS = 420_000  # Spark start-up and its first batch on a busy 2-core machine
GROWTH_MS = 180_000

ROWS_METRIC = """() => {
  const metrics = [...document.querySelectorAll('[data-testid="stMetric"]')];
  const rows = metrics.find(m => m.innerText.includes('Rows in ticks_raw'));
  if (!rows) return null;
  const value = rows.querySelector('[data-testid="stMetricValue"]').innerText.replace(/[^0-9]/g, '');
  return value === '' ? null : Number(value);
}"""

FOUR_CHARTS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
  .filter(c => c.querySelector('canvas, svg')).length >= 4"""

METRIC = """(label) => {
  const metric = [...document.querySelectorAll('[data-testid="stMetric"]')].find(m => m.innerText.includes(label));
  return metric ? metric.querySelector('[data-testid="stMetricValue"]').innerText.trim() : null;
}"""

SHOWS = """(texts) => texts.every(t => document.body.innerText.includes(t))"""
VIEW_MS = 60_000


def _job(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
def consumer(pipeline_env, tmp_path):
    proc = _job([sys.executable, "consumer/consumer.py"], pipeline_env, tmp_path / "consumer.log")
    try:
        yield proc
    finally:
        processes.stop_pid(proc.pid, "consumer", timeout=30)


@pytest.fixture
def producer(pipeline_env, tmp_path, consumer):
    """Recent history (all five indices trade there), one date every half second: minutes of ticks."""
    csv = csv_slice(tmp_path / "slice.csv", 3000)
    proc = _job([sys.executable, "producer/producer.py", "--csv", str(csv), "--tick-interval", "0.5",
                 "--no-progress"], pipeline_env, tmp_path / "producer.log")
    try:
        yield proc
    finally:
        processes.stop_pid(proc.pid, "producer", timeout=15)


@pytest.fixture
def page_url(pipeline_env, tmp_path):
    """The dashboard on the pipeline's services, with three dead letters, a compaction and a dbt
    run recorded, and a marts file (what the lake_compaction DAG would have left)."""
    insert_dead_letters(pipeline_env["DATABASE_URL"])
    insert_job_run(pipeline_env["DATABASE_URL"], "lake_compaction", "success", 900, 12, {"rows": 3000})
    insert_job_run(pipeline_env["DATABASE_URL"], "dbt_build", "success", 880, 7, {"models": 3})
    write_marts(tmp_path / "analytics.duckdb")
    env = {**pipeline_env, "DASHBOARD_PORT": str(processes.free_port()), "DASHBOARD_REFRESH_SECONDS": "2",
           "ANALYTICS_DUCKDB": str(tmp_path / "analytics.duckdb")}
    stack = StackSettings.from_env(env)
    dashboard.start(stack, env)
    try:
        yield dashboard.url(dashboard.settings_for(stack, env))
    finally:
        dashboard.stop(stack)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make browser' (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shows(page, *texts: str) -> None:
    page.wait_for_function(SHOWS, arg=list(texts), timeout=VIEW_MS, polling=500)
    assert page.get_by_text("Traceback").count() == 0


def test_charts_appear_and_the_tick_count_grows_while_the_pipeline_streams(
        producer, page_url, browser, artifacts_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(page_url, wait_until="domcontentloaded", timeout=60_000)
    try:
        page.wait_for_function(FOUR_CHARTS, timeout=FIRST_CHARTS_MS, polling=1000)
        first = page.evaluate(ROWS_METRIC)
        assert first and first > 0
        page.wait_for_function(f"() => ({ROWS_METRIC})() > {first}", timeout=GROWTH_MS, polling=1000)
        later = page.evaluate(ROWS_METRIC)
        assert later > first
        assert page.get_by_text("Traceback").count() == 0
        headings = page.locator("h3").all_inner_texts()
        for title in ("Close", "% change from the first tick", "Rebased to 100", "Share of volume and trade value"):
            assert any(title in h for h in headings), headings

        # The price views run along the trading date by default, and along stream time on request.
        assert re.search(r"Trading dates \d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2}\.", page.inner_text("body"))
        page.screenshot(path=str(artifacts_dir / "dashboard-prices-trading-date.png"), full_page=True)
        page.locator('[data-testid="stSidebar"]').get_by_text("stream time", exact=True).click()
        shows(page, "Stream time 20")
        page.wait_for_function(FOUR_CHARTS, timeout=VIEW_MS, polling=500)
        page.screenshot(path=str(artifacts_dir / "dashboard-prices-stream-time.png"), full_page=True)

        # The pipeline panel: the seeded dead letters and runs, the real job's lag and lake.
        page.get_by_role("tab", name="Pipeline").click()
        shows(page, "Consumer lag per partition", "Batch jobs", DEAD_LETTERS[1][0])
        assert page.evaluate(METRIC, "Dead letters") == str(len(DEAD_LETTERS))
        page.wait_for_function(f"() => /^[0-9,]+$/.test(({METRIC})('Consumer lag') || '')", timeout=VIEW_MS,
                               polling=500)  # a number: the job's checkpoints and the broker were read
        page.wait_for_function(f"() => /^[0-9]+ (s|min)$/.test(({METRIC})('Lake: since last committed batch') || '')",
                               timeout=GROWTH_MS, polling=1000)  # once the Parquet query has committed a batch
        cells = [line.strip() for line in page.inner_text("body").splitlines()]
        assert cells.count("dbt build") == 1 and cells.count("success") == 2, cells
        page.screenshot(path=str(artifacts_dir / "dashboard-pipeline.png"), full_page=True)

        # The analytics view: the marts file's indices and three charts.
        page.get_by_role("tab", name="Analytics").click()
        shows(page, "Performance, rebased to 100", "Hong Kong Stock Exchange", "New York Stock Exchange")
        page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
          .filter(c => c.querySelector('canvas, svg')).length === 3""", timeout=VIEW_MS, polling=500)
        page.screenshot(path=str(artifacts_dir / "dashboard-analytics.png"), full_page=True)

        dark = browser.new_page(viewport={"width": 1600, "height": 1200}, color_scheme="dark")
        dark.goto(page_url, wait_until="domcontentloaded", timeout=60_000)
        dark.wait_for_function(FOUR_CHARTS, timeout=GROWTH_MS, polling=1000)
        dark.screenshot(path=str(artifacts_dir / "dashboard-dark.png"), full_page=True)
    finally:
        page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in tmp_path.glob("*.log"))
        print(logs)
