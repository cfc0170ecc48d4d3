"""The page itself, run by Streamlit's AppTest against real PostgreSQL: the live prices tab.

AppTest executes ``streamlit_app.py`` in this process (the fragment runs once; ``run_every`` does
not fire here), so the settings come from this process's environment. The page reads as
``stockpulse_reader``, derived from ``DATABASE_URL`` exactly as in production.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from stockpulse.dashboard.data import RESULT_TTL_SECONDS
from stockpulse.ops.services.processes import free_port
from tests.integration.dashboard.page import run_page
from tests.integration.dashboard_seed import INDICES, Tick, insert_ticks, known_ticks, reader


METRICS = ("Rows in ticks_raw", "Ticks/s (last minute)", "Since last tick landed", "Latest stream_ts (UTC)")


def next_refresh() -> None:
    """Let the short result cache expire, as it has by the live part's next refresh."""
    time.sleep(RESULT_TTL_SECONDS + 0.1)


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest):
    return at.get("vega_lite_chart")


def test_seeded_table_shows_four_charts_and_exact_metrics(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    ticks = known_ticks(per_index=8, recent=3)
    started = time.monotonic()
    insert_ticks(database_url, ticks)
    at = run_page()
    elapsed = time.monotonic() - started

    shown = metric_values(at)
    assert set(shown) == set(METRICS)
    assert shown["Rows in ticks_raw"] == f"{len(ticks):,}"
    recent_ticks = {t.stream_ts for t in ticks if t.landed_seconds_ago < 60}  # ticks (dates), not rows
    assert shown["Ticks/s (last minute)"] == f"{len(recent_ticks) / 60:.2f}"
    assert shown["Latest stream_ts (UTC)"] == max(t.stream_ts for t in ticks).strftime("%Y-%m-%d %H:%M:%S")
    newest_landing = min(t.landed_seconds_ago for t in ticks)
    value, unit = shown["Since last tick landed"].split()
    assert unit == "s" and newest_landing <= int(value) <= newest_landing + elapsed + 1
    assert len(charts(at)) == 4
    assert [h.value for h in at.subheader] == ["Close", "Rebased to 100", "% change from the first tick",
                                               "Share of volume and trade value"]
    assert not at.warning and not at.error and not at.info
    assert at.multiselect[0].options == list(INDICES)
    assert at.caption[-1].value == (f"Latest 8 ticks ({len(ticks)} rows) of all indices. "
                                    "Trading dates 2021-06-01 to 2021-06-08.")
    assert [t.label for t in at.tabs] == ["Live prices", "Pipeline", "Analytics"]


def test_picking_one_index_narrows_the_views(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    insert_ticks(database_url, known_ticks())
    at = run_page()
    at.multiselect[0].select("HSI").run()
    assert not at.exception
    assert len(charts(at)) == 4
    assert any("of HSI." in c.value for c in at.caption)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in charts(at)]


def x_field(spec: dict) -> str:
    return (spec["layer"][0] if "layer" in spec else spec)["encoding"]["x"]["field"]


def test_the_price_views_run_along_the_trading_date_or_the_stream_time(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    insert_ticks(database_url, known_ticks())
    at = run_page()
    assert at.radio[0].label == "Time axis" and at.radio[0].value == "date"
    assert [x_field(s) for s in chart_specs(at)[:3]] == ["date", "date", "date"]
    at.radio[0].set_value("stream_ts").run()
    assert not at.exception
    assert [x_field(s) for s in chart_specs(at)[:3]] == ["stream_ts", "stream_ts", "stream_ts"]
    assert at.caption[-1].value.endswith("Stream time 2026-11-22 09:00:00 to 2026-11-22 09:00:07 UTC.")


def test_an_index_without_volume_is_named_in_words_not_left_in_the_legend(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    ticks = [t if t.index == "IXIC" else Tick(t.stream_ts, t.index, t.close, 0, t.landed_seconds_ago)
             for t in known_ticks()]
    insert_ticks(database_url, ticks)
    at = run_page()
    assert "HSI, NYA: no volume in this window." in [c.value for c in at.caption]
    share = chart_specs(at)[3]
    assert share["encoding"]["color"]["legend"]["values"] == ["IXIC"]


def test_nothing_traded_shows_a_note_instead_of_an_empty_share_chart(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    start = known_ticks()[0].stream_ts
    insert_ticks(database_url, [Tick(start + timedelta(seconds=k), i, Decimal(100 + k), 0, 3600)
                                for k in range(3) for i in INDICES])
    at = run_page()
    assert len(charts(at)) == 3
    assert any(c.value.startswith("No index traded any volume in this window") for c in at.caption)


def test_empty_table_waits_for_the_first_ticks(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    at = run_page()
    assert metric_values(at) == {"Rows in ticks_raw": "0", "Ticks/s (last minute)": "0.00",
                                 "Since last tick landed": "–", "Latest stream_ts (UTC)": "–"}
    assert "Waiting for the first ticks" in at.info[0].value
    assert not charts(at) and not at.warning and not at.error


def test_unreachable_database_is_one_line_that_names_the_url_and_keeps_retrying(page_env):
    port = free_port()
    page_env.setenv("DASHBOARD_DATABASE_URL", f"postgresql://viewer:hunter2@127.0.0.1:{port}/stocks")
    page_env.setenv("DASHBOARD_REFRESH_SECONDS", "7")
    at = run_page()
    assert len(at.warning) == 1
    line = at.warning[0].value
    assert f"postgresql://viewer:***@127.0.0.1:{port}/stocks" in line
    assert "retrying every 7 s" in line and "\n" not in line and "hunter2" not in line
    assert not charts(at) and not at.metric
    assert at.multiselect[0].options == []


def test_missing_table_says_what_to_do(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE ticks_raw")
    at = run_page()
    assert len(at.warning) == 1
    assert "table ticks_raw does not exist" in at.warning[0].value
    assert "postgres/init.sql" in at.warning[0].value


def test_bad_setting_is_a_clear_error_not_a_traceback(page_env):
    page_env.setenv("DASHBOARD_REFRESH_SECONDS", "often")
    at = run_page()
    assert len(at.error) == 1
    assert "DASHBOARD_REFRESH_SECONDS='often' is not a whole number" in at.error[0].value
    assert not at.metric and not charts(at)


def test_a_url_sqlalchemy_cannot_use_is_a_clear_error_not_a_traceback(page_env):
    page_env.setenv("DASHBOARD_DATABASE_URL", "postgresql://viewer:hunter2@127.0.0.1:54x2/stocks")
    at = run_page()
    assert len(at.error) == 1
    line = at.error[0].value
    assert "DASHBOARD_DATABASE_URL" in line and "port is not a number" in line
    assert "hunter2" not in line and "\n" not in line
    assert not at.metric and not charts(at)


def test_the_picker_fills_when_the_first_ticks_land_after_the_page_opened(page_env, database_url):
    page_env.setenv("DATABASE_URL", database_url)
    at = run_page()
    assert at.multiselect[0].options == [] and "Waiting for the first ticks" in at.info[0].value
    insert_ticks(database_url, known_ticks())
    # The empty option list is still cached (30 s); at its next refresh the live part sees ticks,
    # forgets it and reruns the page once, so the picker offers the indices without waiting.
    next_refresh()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect[0].options == list(INDICES)
    assert len(charts(at)) == 4 and not at.info
    at.run()  # no loop: the next run is an ordinary one
    assert not at.exception and at.multiselect[0].options == list(INDICES)


def test_a_picker_that_stays_empty_does_not_make_the_page_loop(page_env, database_url):
    """The options query fails while the ticks load: the page reruns once for the tick, not forever."""
    from sqlalchemy import exc as sa_exc

    from stockpulse.dashboard import queries

    calls = []

    def failing_recent_indices(conn, *args):
        calls.append(1)
        raise sa_exc.OperationalError("SELECT", {}, Exception("the picker's query failed"))

    page_env.setenv("DATABASE_URL", database_url)
    page_env.setattr(queries, "recent_indices", failing_recent_indices)
    insert_ticks(database_url, known_ticks())
    at = run_page()
    assert len(calls) == 2  # the page, then one rerun for the latest tick
    assert at.multiselect[0].options == [] and len(charts(at)) == 4
    next_refresh()
    at.run()
    assert not at.exception and len(calls) == 3  # same latest tick: no second rerun


class Forwarder:
    """A loopback port that forwards to PostgreSQL while it is open: the dashboard's URL stays the
    same while "the server" goes away and comes back."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:
            if sock is not None:
                _cut(sock)
        self.listener, self.sockets = None, []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            _cut(source)
            _cut(sink)


def _cut(sock: socket.socket) -> None:
    """Shut down (which wakes a thread blocked on it) and close, whatever state it is in."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def forwarder(pg_server):
    gate = Forwarder(pg_server.port)
    try:
        yield gate
    finally:
        gate.close()


def test_the_page_recovers_when_postgres_comes_back(page_env, database_url, forwarder):
    insert_ticks(database_url, known_ticks())
    url = reader(database_url).replace(f":{forwarder.target_port}/", f":{forwarder.port}/")
    page_env.setenv("DASHBOARD_DATABASE_URL", url)

    at = run_page()  # PostgreSQL unreachable at this URL: one line, no picker options, no charts
    assert len(at.warning) == 1 and f"127.0.0.1:{forwarder.port}" in at.warning[0].value
    assert at.multiselect[0].options == [] and not charts(at)

    forwarder.open()  # it comes back: the same page, same URL, no restart
    next_refresh()
    at.run()
    assert not at.exception and not at.warning
    assert len(charts(at)) == 4 and metric_values(at)["Rows in ticks_raw"] == f"{3 * 8:,}"
    assert at.multiselect[0].options == list(INDICES)  # the failure was not cached

    forwarder.close()  # and down again, with pooled connections cut: one line again
    next_refresh()
    at.run()
    assert not at.exception and len(at.warning) == 1
