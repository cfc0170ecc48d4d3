"""Turn a processed Kaggle CSV into ticks: pure parsing, grouping and JSON encoding.

A *row* is one index on one trading date; a *tick* is every row of one trading date, emitted
together with one ``stream_ts``. The file is streamed (never loaded whole) and grouped by
consecutive dates, which is why ``scripts/build_processed_csv.py`` writes it sorted by date.
Nothing here does I/O beyond reading the file, so every rule is testable with plain values.
"""

from __future__ import annotations

import csv
import json
import re
import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from itertools import groupby
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter
from pathlib import Path
from typing import Iterable, Iterator, Union

from stockpulse.errors import InputError
from stockpulse.schema import (
    BOUND_OF, INDEX_MAX_BYTES, INDEX_MAX_LENGTH, PRICE_LIMIT, PRICE_SCALE, VOLUME_LIMIT,
)

logger = logging.getLogger(__name__)

PROCESSED_COLUMNS = ("Index", "Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "CloseUSD")
"""Header of Kaggle's ``indexProcessed.csv``, the file the producer replays."""

_QUANTUM = Decimal(1).scaleb(-PRICE_SCALE)
_PRICE_LIMIT = Decimal(PRICE_LIMIT)  # Decimal against Decimal compares twice as fast as against an int
_CLOSE_BOUND, _VOLUME_BOUND = BOUND_OF["close"], BOUND_OF["volume"]


@dataclass(frozen=True)
class TickRow:
    """One index on one trading date, validated against the tick contract."""

    date: date
    index: str
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal
    adj_close: Decimal | None
    volume: int
    close_usd: Decimal | None


@dataclass(frozen=True)
class BadRow:
    """A CSV line that was skipped, with where it was and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"

    @property
    def kind(self) -> str:
        """The reason without the offending value: what rejections are counted by."""
        return re.sub(r""": (?:'[^']*'|"[^"]*")""", "", self.reason)


class RowError(ValueError):
    """Raised by :func:`parse_row`; the message names the field and the offending value."""


def _number(column: str, text: str, required: bool) -> Decimal | None:
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:  # the rare empty or "null" field is told apart only here, off the hot path
        if text == "" or text.lower() == "null":
            if required:
                raise RowError(f"field {column!r} is missing") from None
            return None
        raise RowError(f"field {column!r}: {text!r} is not a number") from None
    if not value.is_finite():
        raise RowError(f"field {column!r}: {text!r} is not a finite number")
    return value


def _decimal(column: str, text: str, required: bool) -> Decimal | None:
    """A price as the sinks store it: refused, never rounded or nulled, when they cannot hold it.

    One ``quantize`` both scales the value and tells whether digits beyond the scale were lost
    (``as_tuple`` to read the exponent first cost more than all the rest of the field).
    """
    value = _number(column, text, required)
    if value is None:
        return None
    if abs(value) >= _PRICE_LIMIT:
        raise RowError(f"field {column!r}: {text.strip()!r} is out of range (prices stay below {PRICE_LIMIT:,})")
    scaled = value.quantize(_QUANTUM)
    if scaled != value:
        raise RowError(f"field {column!r}: {text.strip()!r} has more than {PRICE_SCALE} decimal places")
    return scaled


def _price(seen: dict[str, Decimal | None], column: str, text: str) -> Decimal | None:
    """An optional price, parsed once per distinct text of its row: old rows repeat one level in
    every price column and Adj Close mostly repeats Close. Only successes are kept in ``seen``,
    so a bad field still fails with its own column's name."""
    if text in seen:
        return seen[text]
    value = seen[text] = _decimal(column, text, required=False)
    return value


def _volume(text: str) -> int:
    value = _number("Volume", text, required=True)
    assert value is not None
    if value != value.to_integral_value():
        raise RowError(f"field 'Volume': {text.strip()!r} is not a whole number")
    if abs(value) >= VOLUME_LIMIT:
        raise RowError(f"field 'Volume': {text.strip()!r} is out of range (volumes stay below 2**63)")
    if not _VOLUME_BOUND.holds(value):
        raise RowError(f"field 'Volume': {text.strip()!r} {_VOLUME_BOUND.broken}")
    return int(value)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise RowError(f"field 'Date': {text.strip()!r} is not a YYYY-MM-DD date") from None


def _is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (decoded as lone surrogates, see read_rows)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_row(fields: list[str]) -> TickRow:
    """Validate one CSV record (without its line terminator) into a :class:`TickRow`."""
    if len(fields) != len(PROCESSED_COLUMNS):
        raise RowError(f"expected {len(PROCESSED_COLUMNS)} columns, found {len(fields)}")
    index_, date_, open_, high, low, close, adj_close, volume, close_usd = fields
    name = index_.strip()
    if not name:
        raise RowError("field 'Index' is missing")
    if not _is_utf8(index_):
        raise RowError(f"field 'Index': {name!r} is not valid UTF-8")
    if "\x00" in index_:
        raise RowError("field 'Index' contains a NUL character")
    if len(name) > INDEX_MAX_LENGTH:
        raise RowError(f"field 'Index' is longer than {INDEX_MAX_LENGTH} characters")
    if len(name.encode("utf-8")) > INDEX_MAX_BYTES:
        raise RowError(f"field 'Index' is longer than {INDEX_MAX_BYTES} bytes in UTF-8")
    close_value = _decimal("Close", close, required=True)
    assert close_value is not None
    if not _CLOSE_BOUND.holds(close_value):
        raise RowError(f"field 'Close': {close.strip()!r} {_CLOSE_BOUND.broken}")
    seen = {close: close_value}
    return TickRow(
        date=_date(date_),
        index=name,
        open=_price(seen, "Open", open_),
        high=_price(seen, "High", high),
        low=_price(seen, "Low", low),
        close=close_value,
        adj_close=_price(seen, "Adj Close", adj_close),
        volume=_volume(volume),
        close_usd=_price(seen, "CloseUSD", close_usd),
    )


def _check_header(path: Path, reader) -> None:
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}:1: cannot read the header: {exc}") from None
    if header is None or tuple(h.strip() for h in header) != PROCESSED_COLUMNS:
        found = ",".join(header) if header else "an empty file"
        raise InputError(f"{path}:1: expected header {','.join(PROCESSED_COLUMNS)}, found {found}")


def check_header(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a readable file with the processed header.

    Called before connecting to anything, so a typo in ``--csv`` fails at once.
    """
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a CSV file (pass --csv PATH/TO/FILE.csv)")
    if not path.is_file():
        raise InputError(f"{path}: no such file (pass --csv PATH or build it with scripts/build_processed_csv.py)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        _check_header(path, csv.reader(handle))


def read_rows(path: Path) -> Iterator[Union[TickRow, BadRow]]:
    """Stream a processed CSV: each record becomes a :class:`TickRow` or a :class:`BadRow`.

    A missing file or a wrong header raises :class:`InputError` before anything is yielded,
    because nothing sensible can be replayed from it. A BOM and CRLF line ends are accepted.
    Bytes that are not UTF-8 are carried as lone surrogates (``surrogateescape``) instead of
    raising: a strict decoder fails on a whole read-ahead block, losing the good rows in it and
    the line count, while this way only the row holding them is reported (by its field's check).
    """
    check_header(path)
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        _check_header(path, reader)
        line = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield BadRow(str(path), line + 1, f"unreadable record: {exc}")
                line = reader.line_num
                continue
            start, line = line + 1, reader.line_num
            if not fields:
                continue
            try:
                yield parse_row(fields)
            except RowError as exc:
                yield BadRow(str(path), start, str(exc))


_BY_DATE = attrgetter("date")


def group_ticks(rows: Iterable[TickRow]) -> Iterator[list[TickRow]]:
    """Group consecutive rows that share a trading date into one tick.

    An out-of-order file still replays (each run of equal dates is a tick); :func:`read_rows`
    does not sort because that would mean loading the whole file.
    """
    for _, group in groupby(rows, key=_BY_DATE):
        yield list(group)


def format_stream_ts(moment: datetime) -> str:
    """UTC, microseconds, trailing Z: the form Spark's ``from_json`` reads as a TIMESTAMP.

    ``isoformat`` rather than ``strftime``: same text, a third of the cost, once per tick.
    """
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _decimal_json(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _json_value(value: object) -> str:
    """One field as JSON: decimals with their exact digits (never through a float), dates as
    ``"YYYY-MM-DD"``, strings escaped as ``json.dumps`` does. Looked up by exact type first (it
    runs ten times per message); a subclass takes the general path with the same result."""
    encode = _JSON_BY_TYPE.get(type(value))
    if encode is not None:
        return encode(value)
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        return _decimal_json(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    return json.dumps(value)


_JSON_BY_TYPE = {
    type(None): lambda _value: "null",
    Decimal: _decimal_json,
    int: str,
    str: _json_string,
    date: lambda value: f'"{value.isoformat()}"',
}


def message_head(stream_ts: str) -> bytes:
    """The start of every message of one tick: ``{"stream_ts":"...",``. Built once per tick."""
    return f'{{"stream_ts":{_json_value(stream_ts)},'.encode("utf-8")


def message_tail(row: TickRow) -> bytes:
    """The rest of one message, after its ``stream_ts``: what a row encodes to before the tick has
    a time, so that it can be encoded ahead of sending (:mod:`stockpulse.replay.tick_feed`).

    Written by hand rather than with ``json.dumps`` so that decimals keep their exact digits,
    and as one f-string because it runs once per message (a generator over the contract's fields
    cost three times as much); ``test_message_follows_the_contract`` pins its order to the contract.
    """
    value = _json_value
    return (
        f'"date":{value(row.date)},"index":{value(row.index)},'
        f'"open":{value(row.open)},"high":{value(row.high)},"low":{value(row.low)},"close":{value(row.close)},'
        f'"adj_close":{value(row.adj_close)},"volume":{value(row.volume)},"close_usd":{value(row.close_usd)}}}'
    ).encode("utf-8")


def encode_message(row: TickRow, stream_ts: str) -> bytes:
    """The JSON value of one Kafka message, field for field as in :data:`stockpulse.schema.TICK_FIELDS`."""
    return message_head(stream_ts) + message_tail(row)
