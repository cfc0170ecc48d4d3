"""CSV parsing of good and bad rows, tick grouping, and the JSON contract of a message."""

import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from stockpulse.errors import InputError
from stockpulse.replay.csv_rows import (
    PROCESSED_COLUMNS, BadRow, RowError, TickRow, encode_message, format_stream_ts, group_ticks,
    check_header, parse_row, read_rows,
)
from stockpulse.schema import TICK_FIELDS

HEADER = ",".join(PROCESSED_COLUMNS)
GOOD = ["HSI", "1987-01-02", "2540.1", "2541", "2539.5", "2540.100098", "2540.100098", "1200.0", "330.21301274"]


def write(tmp_path, text, name="ticks.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_parse_good_row_keeps_exact_decimals():
    row = parse_row(GOOD)
    assert row.index == "HSI" and row.date == date(1987, 1, 2)
    assert row.close == Decimal("2540.100098") and row.volume == 1200
    assert row.close_usd == Decimal("330.21301274")


@pytest.mark.parametrize("fields, message", [
    (GOOD[:8], "expected 9 columns, found 8"),
    (GOOD[:5] + ["abc"] + GOOD[6:], "field 'Close': 'abc' is not a number"),
    (GOOD[:5] + [""] + GOOD[6:], "field 'Close' is missing"),
    (GOOD[:5] + ["null"] + GOOD[6:], "field 'Close' is missing"),
    (GOOD[:7] + [""] + GOOD[8:], "field 'Volume' is missing"),
    (GOOD[:7] + ["1.5"] + GOOD[8:], "not a whole number"),
    (GOOD[:7] + ["-3"] + GOOD[8:], "negative"),
    (GOOD[:1] + ["1987-13-02"] + GOOD[2:], "field 'Date': '1987-13-02' is not a YYYY-MM-DD date"),
    ([""] + GOOD[1:], "field 'Index' is missing"),
    (GOOD[:5] + ["nan"] + GOOD[6:], "not a finite number"),
    (GOOD[:5] + ["0"] + GOOD[6:], "not positive"),
])
def test_parse_bad_rows_name_the_field(fields, message):
    with pytest.raises(RowError, match=message):
        parse_row(fields)


def test_optional_prices_may_be_empty():
    row = parse_row(GOOD[:2] + ["", "", ""] + GOOD[5:6] + [""] + GOOD[7:8] + [""])
    assert row.open is None and row.high is None and row.adj_close is None and row.close_usd is None


def test_read_rows_reports_file_and_line_and_keeps_going(tmp_path):
    lines = [HEADER, ",".join(GOOD), "HSI,1987-01-05,1,2,x", ",".join(GOOD[:5] + ["bad"] + GOOD[6:]),
             ",".join(["N225"] + GOOD[1:]), "HSI,1987-01-06,25"]  # last line truncated, no newline
    path = write(tmp_path, "\ufeff" + "\r\n".join(lines))  # BOM and CRLF as in Kaggle's raw file
    items = list(read_rows(path))
    good = [i for i in items if isinstance(i, TickRow)]
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [g.index for g in good] == ["HSI", "N225"]
    assert [(b.line, b.reason.split(":")[0]) for b in bad] == [
        (3, "expected 9 columns, found 5"), (4, "field 'Close'"), (6, "expected 9 columns, found 3")]
    assert str(bad[0]).startswith(f"{path}:3: ")


def test_a_byte_that_is_not_utf8_costs_only_its_own_row(tmp_path):
    """A strict decoder fails on a whole read-ahead block: rows around the bad byte would vanish."""
    body = [",".join([name] + GOOD[1:]).encode() for name in ("HSI", "NYA", "N225") for _ in range(400)]
    body[500] = body[500].replace(b"2540.1", b"25\xff40.1", 1)   # line 502: a Latin-1 byte in Open
    body[700] = b"NY\xe9A" + body[700][3:]                        # line 702: in Index
    path = tmp_path / "ticks.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *body]) + b"\nHSI,1987-01-06,25")
    items = list(read_rows(path))
    bad = [i for i in items if isinstance(i, BadRow)]
    assert sum(isinstance(i, TickRow) for i in items) == len(body) - 2
    assert [(b.line, b.reason.split(":")[0]) for b in bad] == [
        (502, "field 'Open'"), (702, "field 'Index'"), (len(body) + 2, "expected 9 columns, found 3")]
    assert "not valid UTF-8" in bad[1].reason


def test_missing_file_and_wrong_header_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_rows(tmp_path / "absent.csv"))
    with pytest.raises(InputError, match=r":1: expected header"):
        list(read_rows(write(tmp_path, "Index,Date,Close\nHSI,2020-01-01,1\n")))
    with pytest.raises(InputError, match="empty file"):
        list(read_rows(write(tmp_path, "", name="empty.csv")))


def test_group_ticks_groups_consecutive_dates():
    rows = [parse_row([i, d] + GOOD[2:]) for i, d in
            [("HSI", "2020-01-01"), ("NYA", "2020-01-01"), ("HSI", "2020-01-02"), ("NYA", "2020-01-03")]]
    ticks = list(group_ticks(rows))
    assert [[r.index for r in t] for t in ticks] == [["HSI", "NYA"], ["HSI"], ["NYA"]]


def test_message_follows_the_contract():
    stamp = format_stream_ts(datetime(2026, 11, 22, 3, 4, 5, 678, tzinfo=timezone.utc))
    assert stamp == "2026-11-22T03:04:05.000678Z"
    message = json.loads(encode_message(parse_row(GOOD), stamp))
    assert list(message) == [f.name for f in TICK_FIELDS]
    assert message["index"] == "HSI" and message["date"] == "1987-01-02"
    assert message["volume"] == 1200 and isinstance(message["volume"], int)
    assert message["close"] == 2540.100098 and message["close_usd"] == 330.21301274
    raw = encode_message(parse_row(GOOD), stamp).decode()
    assert '"close":2540.100098' in raw  # exact digits, no float round-trip


def test_nulls_are_json_null():
    row = parse_row(GOOD[:2] + ["", "", ""] + GOOD[5:6] + [""] + GOOD[7:8] + [""])
    message = json.loads(encode_message(row, "x"))
    assert message["open"] is None and message["close_usd"] is None


def test_shipped_csv_replays_without_bad_rows():
    from stockpulse.config import PROJECT_ROOT

    items = list(read_rows(PROJECT_ROOT / "data" / "indexProcessed.csv"))
    assert not [i for i in items if isinstance(i, BadRow)]
    dates = [i.date for i in items]
    assert dates == sorted(dates), "the shipped file must be sorted by date for tick grouping"
    assert len(items) == 50568


@pytest.mark.parametrize("fields, message", [
    (["HSI", "2020-01-02", "1e20", "2", "1", "1.5", "1.5", "100", "1.5"], "field 'Open': '1e20' is out of range"),
    (["HSI", "2020-01-02", "1e15", "2", "1", "1.5", "1.5", "100", "1.5"], "field 'Open': '1e15' is out of range"),
    (["HSI", "2020-01-02", "1", "2", "1", "1.5", "1.5", "1e20", "1.5"], "field 'Volume': '1e20' is out of range"),
    (["HSI", "2020-01-02", "1", "2", "1", "1.123456789", "1.5", "100", "1.5"], "field 'Close': '1.123456789' has more than 8"),
])
def test_a_value_the_sinks_cannot_hold_is_refused_not_rounded_or_nulled(fields, message):
    with pytest.raises(RowError, match=re.escape(message)):
        parse_row(fields)


def test_trailing_zeros_beyond_the_scale_are_not_extra_precision():
    row = parse_row(["HSI", "2020-01-02", "1", "2", "1", "1.50000000000", "1.5", "100", "1.5"])
    assert row.close == Decimal("1.5")


def test_a_directory_is_named_as_such(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        check_header(tmp_path)


@pytest.mark.parametrize("index, message", [("H\x00SI", "contains a NUL character"), ("Q" * 65, "longer than 64"),
                                            ("\U0001F642" * 40, "longer than 128 bytes in UTF-8")])
def test_an_index_the_sinks_cannot_hold_is_refused(index, message):
    with pytest.raises(RowError, match=message):
        parse_row([index, "2020-01-02", "1", "2", "1", "1.5", "1.5", "100", "1.5"])


def test_repeated_prices_are_parsed_once_and_a_bad_one_is_still_named_by_its_column():
    """Old rows repeat one level in every price column: the row shares one value, and when the
    text is bad the first column holding it is the one named."""
    row = parse_row(["NYA", "1966-01-03", "527.210022", "527.210022", "", "527.210022", "527.210022", "0.0", " NULL "])
    assert row.open is row.high is row.close is row.adj_close and row.close == Decimal("527.210022")
    assert row.low is None and row.close_usd is None
    with pytest.raises(RowError, match=re.escape("field 'Open': '1.123456789' has more than 8")):
        parse_row(["HSI", "2020-01-02", "1.123456789", "1.123456789", "1", "1.5", "1.5", "100", "1.5"])
    with pytest.raises(RowError, match="field 'High': 'x' is not a number"):
        parse_row(["HSI", "2020-01-02", "1.5", "x", "x", "1.5", "1.5", "100", "1.5"])


@pytest.mark.parametrize("text, json_text", [
    ("1E+2", "100"), ("100.00000000", "100"), ("0.00000001", "0.00000001"), ("123.45000", "123.45"),
    ("-0.5", "-0.5"), ("0", "0"), ("9999999999.99999999", "9999999999.99999999"),
])
def test_prices_keep_their_exact_digits_in_plain_notation(text, json_text):
    row = parse_row(["HSI", "2020-01-02", text, "2", "1", "1.5", "1.5", "100", "1.5"])
    assert f'"open":{json_text},' in encode_message(row, "x").decode()


def test_strings_are_escaped_as_json_dumps_escapes_them_and_every_value_survives_parsing():
    stamp = format_stream_ts(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc))
    row = parse_row(['Q"\\é\U0001F642', "2020-01-02", "1", "2", "0.5", "1.5", "1.5", "100", "1.5"])
    raw = encode_message(row, stamp).decode()
    assert f'"index":{json.dumps(row.index)},' in raw and raw.isascii()
    message = json.loads(raw, parse_float=Decimal)
    assert message == {"stream_ts": stamp, "date": "2020-01-02", "index": row.index, "open": 1, "high": 2,
                       "low": Decimal("0.5"), "close": Decimal("1.5"), "adj_close": Decimal("1.5"), "volume": 100,
                       "close_usd": Decimal("1.5")}


def test_stream_ts_is_utc_whatever_the_clock_zone():
    from datetime import timedelta

    moment = datetime(2026, 3, 1, 0, 30, 0, 120, tzinfo=timezone(timedelta(hours=2)))
    assert format_stream_ts(moment) == "2026-02-28T22:30:00.000120Z"
    assert format_stream_ts(datetime(2026, 3, 1, tzinfo=timezone.utc)) == "2026-03-01T00:00:00.000000Z"
