"""The CSV reader in its own process: what it hands over, and how it stops and fails."""

import os
import signal
import threading
import time

import pytest

from stockpulse.replay import tick_feed
from stockpulse.replay.csv_rows import PROCESSED_COLUMNS, TickRow, encode_message, message_head, read_rows
from stockpulse.replay.tick_feed import FeedError, TickFeed, read_chunks


def write_csv(path, days, per_day=("HSI", "NYA"), bad_line_after=None):
    lines = [",".join(PROCESSED_COLUMNS)]
    for n in range(days):
        day = f"20{n // 365 + 1:02d}-{n % 12 + 1:02d}-{n % 28 + 1:02d}"
        for index in per_day:
            lines.append(f"{index},{day},1,2,0.5,{n}.25,1.5,100.0,1.5")
        if bad_line_after == n:
            lines.append("HSI,2020-01-01,oops")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chunks_hold_the_files_ticks_in_order_as_the_messages_encode(tmp_path, monkeypatch):
    monkeypatch.setattr(tick_feed, "CHUNK_TICKS", 3)
    path = write_csv(tmp_path / "t.csv", 7, bad_line_after=4)
    chunks = list(read_chunks(path, loop=False, start_date=None, resume=None))
    assert [len(c.ticks) for c in chunks] == [3, 3, 1] and chunks[-1].done and not chunks[0].done
    assert sum(c.valid_rows for c in chunks) == 14 and [b.line for c in chunks for b in c.bad] == [12]
    head = message_head("2026-12-01T00:00:00.000000Z")
    sent = [head + tail for c in chunks for tick in c.ticks for _key, tail in tick]
    rows = [r for r in read_rows(path) if isinstance(r, TickRow)]
    assert sent == [encode_message(r, "2026-12-01T00:00:00.000000Z") for r in rows]
    assert [key for c in chunks for tick in c.ticks for key, _tail in tick] == [r.index.encode() for r in rows]


def test_a_file_that_cannot_be_read_ends_in_an_error_chunk_not_a_traceback(tmp_path):
    (last,) = read_chunks(tmp_path / "missing.csv", loop=False, start_date=None, resume=None)
    assert last.error and "missing.csv" in last.error and not last.done


def test_the_reader_process_hands_over_the_same_chunks(tmp_path):
    path = write_csv(tmp_path / "t.csv", 450)
    feed = TickFeed(path)
    try:
        chunks = list(feed.chunks())
    finally:
        feed.close()
    expected = list(read_chunks(path, loop=False, start_date=None, resume=None))
    assert [c.ticks for c in chunks] == [c.ticks for c in expected] and feed.finished
    assert not feed.process.is_alive()


def test_the_reader_ignores_ctrl_c_and_sigterm_and_is_stopped_by_close_even_far_ahead(tmp_path):
    """Ctrl-C and make down's SIGTERM go to the whole process group: only the sender reacts."""
    feed = TickFeed(write_csv(tmp_path / "t.csv", 50), loop=True)  # endless: it fills the queue and blocks
    try:
        next(feed.chunks())
        os.kill(feed.process.pid, signal.SIGINT)
        os.kill(feed.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert feed.process.is_alive()
    finally:
        feed.close()
    assert not feed.process.is_alive()


def test_a_reader_that_died_is_a_one_line_error_naming_the_file(tmp_path):
    feed = TickFeed(write_csv(tmp_path / "t.csv", 50), loop=True)
    try:
        chunks = feed.chunks()
        next(chunks)
        os.kill(feed.process.pid, signal.SIGKILL)
        with pytest.raises(FeedError, match=r"t\.csv: the process reading it ended \(exit code -9\)"):
            for _ in chunks:
                pass
    finally:
        feed.close()


def test_a_stop_ends_the_wait_for_a_chunk(tmp_path):
    stop = threading.Event()
    feed = TickFeed(write_csv(tmp_path / "t.csv", 5), stop=stop)
    try:
        os.kill(feed.process.pid, signal.SIGSTOP)  # a reader that never answers
        stop.set()
        assert list(feed.chunks()) == [] and not feed.finished
    finally:
        os.kill(feed.process.pid, signal.SIGCONT)
        feed.close()


def test_a_reader_whose_sender_was_killed_ends_instead_of_waiting_for_good(tmp_path):
    """A SIGKILLed sender cannot stop its reader: the reader, blocked on a full queue, notices."""
    import subprocess
    import sys

    script = (f"import time; from pathlib import Path; from stockpulse.replay.tick_feed import TickFeed\n"
              f"if __name__ == '__main__':\n"
              f"    feed = TickFeed(Path({str(write_csv(tmp_path / 't.csv', 50))!r}), loop=True)\n"
              f"    print(feed.process.pid, flush=True); time.sleep(600)\n")
    (tmp_path / "sender.py").write_text(script)
    sender = subprocess.Popen([sys.executable, str(tmp_path / "sender.py")], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    reader = int(sender.stdout.readline())
    time.sleep(1)
    sender.kill()
    sender.wait()
    for _ in range(100):
        try:
            os.kill(reader, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{reader}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.1)
    os.kill(reader, signal.SIGKILL)
    pytest.fail("the reader outlived its sender by 10 s")
