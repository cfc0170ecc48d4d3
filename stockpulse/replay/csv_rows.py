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
from pathlib import Path
from typing import Iterable, Iterator, Union

from stockpulse.errors import InputError
from stockpulse.schema import (
    BOUND_OF, INDEX_MAX_BYTES, INDEX_MAX_LENGTH, PRICE_LIMIT, PRICE_SCALE, TICK_FIELDS, VOLUME_LIMIT,
)

logger = logging.getLogger(__name__)

PROCESSED_COLUMNS = ("Index", "Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "CloseUSD")
"""Header of Kaggle's ``indexProcessed.csv``, the file the producer replays."""

_QUANTUM = Decimal(1).scaleb(-PRICE_SCALE)


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
    if text == "" or text.lower() == "null":
        if required:
            raise RowError(f"field {column!r} is missing")
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RowError(f"field {column!r}: {text!r} is not a number") from None
    if not value.is_finite():
        raise RowError(f"field {column!r}: {text!r} is not a finite number")
    return value


def _decimal(column: str, text: str, required: bool) -> Decimal | None:
    """A price as the sinks store it: refused, never rounded or nulled, when they cannot hold it."""
    value = _number(column, text, required)
    if value is None:
        return None
    if abs(value) >= PRICE_LIMIT:
        raise RowError(f"field {column!r}: {text.strip()!r} is out of range (prices stay below {PRICE_LIMIT:,})")
    if value.as_tuple().exponent < -PRICE_SCALE and value != value.quantize(_QUANTUM):
        raise RowError(f"field {column!r}: {text.strip()!r} has more than {PRICE_SCALE} decimal places")
    return value.quantize(_QUANTUM)


def _volume(text: str) -> int:
    value = _number("Volume", text, required=True)
    assert value is not None
    if value != value.to_integral_value():
        raise RowError(f"field 'Volume': {text.strip()!r} is not a whole number")
    if abs(value) >= VOLUME_LIMIT:
        raise RowError(f"field 'Volume': {text.strip()!r} is out of range (volumes stay below 2**63)")
    if not BOUND_OF["volume"].holds(value):
        raise RowError(f"field 'Volume': {text.strip()!r} {BOUND_OF['volume'].broken}")
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
    if not index_.strip():
        raise RowError("field 'Index' is missing")
    if not _is_utf8(index_):
        raise RowError(f"field 'Index': {index_.strip()!r} is not valid UTF-8")
    if "\x00" in index_:
        raise RowError("field 'Index' contains a NUL character")
    if len(index_.strip()) > INDEX_MAX_LENGTH:
        raise RowError(f"field 'Index' is longer than {INDEX_MAX_LENGTH} characters")
    if len(index_.strip().encode("utf-8")) > INDEX_MAX_BYTES:
        raise RowError(f"field 'Index' is longer than {INDEX_MAX_BYTES} bytes in UTF-8")
    close_value = _decimal("Close", close, required=True)
    assert close_value is not None
    if not BOUND_OF["close"].holds(close_value):
        raise RowError(f"field 'Close': {close.strip()!r} {BOUND_OF['close'].broken}")
    return TickRow(
        date=_date(date_),
        index=index_.strip(),
        open=_decimal("Open", open_, required=False),
        high=_decimal("High", high, required=False),
        low=_decimal("Low", low, required=False),
        close=close_value,
        adj_close=_decimal("Adj Close", adj_close, required=False),
        volume=_volume(volume),
        close_usd=_decimal("CloseUSD", close_usd, required=False),
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


def group_ticks(rows: Iterable[TickRow]) -> Iterator[list[TickRow]]:
    """Group consecutive rows that share a trading date into one tick.

    An out-of-order file still replays (each run of equal dates is a tick); :func:`read_rows`
    does not sort because that would mean loading the whole file.
    """
    for _, group in groupby(rows, key=lambda r: r.date):
        yield list(group)


def format_stream_ts(moment: datetime) -> str:
    """UTC, microseconds, trailing Z: the form Spark's ``from_json`` reads as a TIMESTAMP."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    return json.dumps(value)


def encode_message(row: TickRow, stream_ts: str) -> bytes:
    """The JSON value of one Kafka message, field for field as in :data:`TICK_FIELDS`.

    Written by hand rather than with ``json.dumps`` so that decimals keep their exact digits.
    """
    values = {"stream_ts": stream_ts, **{f.name: getattr(row, f.name) for f in TICK_FIELDS[1:]}}
    body = ",".join(f'"{name}":{_json_value(values[name])}' for name in (f.name for f in TICK_FIELDS))
    return ("{" + body + "}").encode("utf-8")
