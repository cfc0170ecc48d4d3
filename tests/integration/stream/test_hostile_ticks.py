"""Hostile messages never stop the job, and each lands in exactly one table (property-based).

Hypothesis draws whole topics of messages: valid ticks, ticks that are valid JSON but hostile in one
field (the ``index`` that becomes a lake directory, prices and volumes beyond what the sinks hold,
dates outside PostgreSQL's calendar, missing, null, extra and mistyped fields), damaged JSON, and
bytes that are not JSON at all. For each topic it runs ``consumer.py --once`` and checks that the
job exits 0, that every record is in exactly one of ``ticks_raw`` / ``ticks_dead_letter``, that the
lake holds exactly the ``ticks_raw`` rows, and that ticks built from in-range values arrive unchanged.

Why one Spark run per *example*, not per message: a run costs ~40 s, so an example is a whole
topic (~35-150 records), and there are three: the failures found so far (:data:`FOUND`), then two
drawn ones. Each example gets its own topic, lake and checkpoints; the database is shared and
everything is counted by ``kafka_topic``, part of both tables' key. Every kind of message is a list
of its own with at least one element, so even the simplest example (the one Hypothesis always tries
first) sends one of every kind, the first value of each curated list included, and a failing example
shrinks to one simplest message of each kind plus the culprit (within Hypothesis' own five-minute
shrinking budget). ``derandomize=True`` and no example database: CI runs the same examples every
time; a case worth keeping forever goes into :data:`FOUND`.

The lake keeps the default ``index,date`` layout on purpose: the partition directory is what a
hostile ``index`` attacks (``/``, ``..``, ``=``, 64 four-byte characters in one path segment).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from datetime import date, datetime, timezone
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from stockpulse.db import connect
from stockpulse.ops.services.broker import ensure_topic
from stockpulse.schema import (
    BOUNDS, INDEX_MAX_BYTES, INDEX_MAX_LENGTH, PRICE_FIELDS, PRICE_LIMIT, PRICE_SCALE, tick_field_names,
)
from tests.conftest import run_cli
from tests.integration.helpers import lake_table

pytestmark = pytest.mark.slow

FIELDS = tick_field_names()
OPTIONAL_PRICES = [name for name in PRICE_FIELDS if name != "close"]
QUANTUM = Decimal(1).scaleb(-PRICE_SCALE)
MAX_PRICE = Decimal(PRICE_LIMIT) - QUANTUM


class Message:
    """One Kafka record; ``tick`` is set when it was built from in-range values, so it must land in
    ``ticks_raw`` exactly as sent.

    A plain class, not a dataclass: Hypothesis prints a dataclass field by field, and a nested
    message is ~100 kB; this ``__repr__`` keeps the report of a failing example readable.
    """

    __slots__ = ("key", "value", "tick")

    def __init__(self, key: bytes | None, value: bytes | None, tick: dict | None = None) -> None:
        self.key, self.value, self.tick = key, value, tick

    def __repr__(self) -> str:
        value = self.value if self.value is None or len(self.value) <= 200 else (
            self.value[:200] + f"...<{len(self.value)} bytes>".encode())
        return f"Message(key={self.key!r}, value={value!r}{', valid' if self.tick else ''})"


# == Building blocks =============================================================================

def encode(tokens: dict[str, str]) -> bytes:
    """A JSON object from field name -> raw JSON token, so a number keeps its exact text (and a
    lone surrogate its bytes: ``surrogatepass`` writes it as the invalid UTF-8 it is)."""
    body = ", ".join(f"{json.dumps(name)}: {token}" for name, token in tokens.items())
    return ("{" + body + "}").encode("utf-8", "surrogatepass")


def number(value: Decimal) -> str:
    return format(value, "f")


def _to_limit(unit: str) -> str:
    """``unit`` repeated to the longest index the contract allows: 64 characters, 128 bytes."""
    text = (unit * INDEX_MAX_LENGTH)[:INDEX_MAX_LENGTH]
    while len(text.encode("utf-8")) > INDEX_MAX_BYTES:
        text = text[:-1]
    return text


def fits(index: str) -> bool:
    """Valid by the contract: not blank, at most 64 characters and 128 bytes in UTF-8."""
    return bool(index.strip()) and len(index) <= INDEX_MAX_LENGTH and len(index.encode("utf-8")) <= INDEX_MAX_BYTES


def _repeated(unit: str, length: int) -> str:
    return (unit * length)[:length]


KEYS = st.one_of(st.none(), st.sampled_from([b"HSI", b"\x00", b"\xff\xfe", "🙂".encode()]), st.binary(max_size=24))
"""Record keys: only dead letters store them, sanitised like values."""

INDEX_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
"""What an index may hold by the contract: any text but NUL (and lone surrogates, not UTF-8)."""

ANY_CHARS = st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udfff"]))

PATH_ATTACKS = [
    "HSI", "a/b", "/", "../..", "..", ".", "=", "index=x/date=y", "%2F", "100%", "a\\b", "_spark_metadata",
    ".hidden", "_temporary", "__HIVE_DEFAULT_PARTITION__", "C:", "*?<>|\"'", "\u202eIXN\u202c", "עברית",
    "日本語", "x\n\\.\ny", "\\.", "\\N", "a,b", '"', "DROP TABLE ticks_raw;--", "\x01\x1f\x7f",
    _to_limit("🙂"), _to_limit("é"), _to_limit("/"), _to_limit("Q"), _to_limit("\u202e"),
]
"""Indices that are valid by the contract but attack the lake's ``index=<value>`` directory, the
CSV that COPY reads (``\\.`` alone on a line ends it) or a careless reader."""

VALID_INDEX = st.one_of(
    st.sampled_from(PATH_ATTACKS),
    st.text(INDEX_CHARS, min_size=1, max_size=INDEX_MAX_LENGTH),
    st.text(INDEX_CHARS, min_size=1, max_size=3).map(_to_limit),
).filter(fits)

PRICE = st.decimals(min_value=-MAX_PRICE, max_value=MAX_PRICE, places=PRICE_SCALE)
CLOSE = st.decimals(min_value=QUANTUM, max_value=MAX_PRICE, places=PRICE_SCALE)
STREAM_TS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))


def tokens_of(tick: dict, ascii_only: bool = True) -> dict[str, str]:
    """The JSON tokens of a tick given as Python values, in contract order."""
    tokens = {
        "stream_ts": json.dumps(tick["stream_ts"].isoformat(timespec="microseconds").replace("+00:00", "Z")),
        "date": json.dumps(tick["date"].isoformat()),
        "index": json.dumps(tick["index"], ensure_ascii=ascii_only),
        **{name: "null" if tick[name] is None else number(tick[name]) for name in PRICE_FIELDS},
        "volume": str(tick["volume"]),
    }
    return {name: tokens[name] for name in FIELDS}


@st.composite
def valid_tick(draw) -> tuple[dict, dict[str, str]]:
    """A tick from in-range values and its JSON tokens: the oracle says it lands unchanged."""
    tick = {
        "stream_ts": draw(STREAM_TS).replace(tzinfo=timezone.utc),
        "date": draw(st.dates()),
        "index": draw(VALID_INDEX),
        **{name: draw(st.none() | PRICE) for name in OPTIONAL_PRICES},
        "close": draw(CLOSE),
        "volume": draw(st.integers(0, 2 ** 63 - 1)),
    }
    return tick, tokens_of(tick, ascii_only=draw(st.booleans()))


TOKENS = valid_tick().map(lambda pair: pair[1])


# == The kinds of message ========================================================================

@st.composite
def valid(draw) -> Message:
    tick, tokens = draw(valid_tick())
    return Message(draw(KEYS), encode(tokens), tick)


@st.composite
def with_field(draw, field: str | st.SearchStrategy, token: st.SearchStrategy) -> Message:
    """A valid tick with one field's JSON token replaced."""
    tokens = draw(TOKENS)
    name = field if isinstance(field, str) else draw(field)
    return Message(draw(KEYS), encode({**tokens, name: draw(token)}))


def strings(values) -> list[str]:
    return [json.dumps(v) for v in values]


NOT_A_NUMBER = ['"abc"', '""', '"1.5"', "true", "false", "[]", "[1.5]", "{}", '{"v": 1}']

HOSTILE_INDEX = st.one_of(
    st.sampled_from(strings(["", " ", "\t\r\n", "H\x00SI", "\x00", "Q" * (INDEX_MAX_LENGTH + 1),
                             "🙂" * (INDEX_MAX_LENGTH + 1), "🙂" * INDEX_MAX_LENGTH,
                             "🙂" * (INDEX_MAX_BYTES // 4 + 1)])
                    + ['"\\ud800"', '"\\udfff\\ud800"', "42", "-0.5", "null", '["HSI"]', '{"index": "HSI"}']),
    st.text(ANY_CHARS, max_size=80).map(json.dumps),
    st.tuples(st.text(ANY_CHARS, min_size=1, max_size=3), st.integers(INDEX_MAX_LENGTH + 1, 2000))
    .map(lambda pair: json.dumps(_repeated(*pair))),
)

HOSTILE_NUMBER = st.one_of(
    st.sampled_from([
        "1e10", "10000000000", "-10000000000", "9999999999.999999999", "1e-9", "0.000000001", "1.123456789",
        "0", "-0", "-1", "1E+2", "1e308", "1e309", "-1e309", "1e-400", "NaN", "Infinity", "-Infinity", "+1",
        ".5", "5.", "01", "0x1A", "1" + "0" * 400, "0." + "0" * 400 + "1", "9" * 1100, *NOT_A_NUMBER,
    ]),
    st.floats().map(json.dumps),
    st.decimals().map(str),
)

HOSTILE_VOLUME = st.one_of(
    st.sampled_from([
        "-1", "-9223372036854775808", "9223372036854775808", "18446744073709551616", "1" + "0" * 40, "1.5",
        "10.0", "1e3", "-0", '"10"', "NaN", "Infinity", *NOT_A_NUMBER,
    ]),
    st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.floats().map(json.dumps),
)

HOSTILE_DATE = st.one_of(
    st.sampled_from(strings([
        "0000-01-01", "-0001-01-01", "-5000-01-01", "+10000-01-01", "10000-01-01", "+5881580-07-11",
        "5874898-01-01", "-4713-11-24", "-4714-11-24", "2020-02-30", "2020-13-01", "2020-00-10", "2020-1-2",
        "20200102", "2020-01-02T10:00:00Z", " 2020-01-02", "2020-01-02 ", "2020-W01-1", "2020-001", "yesterday",
        "", "١٩٩٩-٠١-٠١", "２０２０-０１-０２",
    ]) + ["20200102", "-1", "1e10", *NOT_A_NUMBER]),
    st.text(ANY_CHARS, max_size=20).map(json.dumps),
)

HOSTILE_STREAM_TS = st.one_of(
    st.sampled_from(strings([
        "0000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "-4713-11-24T00:00:00Z", "-4714-11-23T00:00:00Z",
        "-5000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z", "+294247-01-10T04:00:54.775807Z",
        "+294248-01-01T00:00:00Z", "-290308-12-21T19:59:05.224192Z", "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999-01:00", "2026-11-22T03:04:05.123456789Z", "2026-11-22T24:00:00Z",
        "2026-11-22T23:59:60Z", "2026-02-29T00:00:00Z", "2026-11-22T03:04:05+25:00", "2026-11-22T03:04:05",
        "2026-11-22", "2026-11-22 03:04:05", "now", "", "T", "2026-11-22T03:04:05.Z",
    ]) + [
        "0", "-1", "1700000000", "1.7e9", "253402300800", "-62135596800", "-62167219200", "-210866803200",
        "-300000000000", "9223372036854", "9223372036855", "-9223372036855", "9223372036854775807",
        "-9223372036854775808", "1e20", "NaN", *NOT_A_NUMBER,
    ]),
    st.integers(-(2 ** 63), 2 ** 63 - 1).map(str),
    st.text(ANY_CHARS, max_size=40).map(json.dumps),
)


@st.composite
def missing_fields(draw) -> Message:
    tokens, gone = draw(TOKENS), draw(st.sets(st.sampled_from(FIELDS), min_size=1))
    return Message(draw(KEYS), encode({k: v for k, v in tokens.items() if k not in gone}))


@st.composite
def null_fields(draw) -> Message:
    tokens, nulled = draw(TOKENS), draw(st.sets(st.sampled_from(FIELDS), min_size=1))
    return Message(draw(KEYS), encode({k: "null" if k in nulled else v for k, v in tokens.items()}))


EXTRA_TOKENS = st.sampled_from(["null", "-1", "1e10", '"x"', "[]", '{"close": -1}', '"\\u0000"'])


@st.composite
def extra_fields(draw) -> Message:
    """Unknown keys, keys that differ from a field by case or a blank, and a field given twice."""
    tokens = draw(TOKENS)
    extra = draw(st.dictionaries(
        st.one_of(st.sampled_from(["Close", "INDEX", "close ", " volume", "trade_value", "kafka_offset", ""]),
                  st.text(ANY_CHARS, max_size=8)),
        EXTRA_TOKENS, min_size=1, max_size=5,
    ))
    body = encode({**tokens, **extra})
    if draw(st.booleans()):  # the same name twice: which one counts is the parser's choice
        body = body[:-1] + f', {json.dumps(draw(st.sampled_from(FIELDS)))}: {draw(EXTRA_TOKENS)}}}'.encode()
    return Message(draw(KEYS), body)


def _damage(text: bytes, how: str, at: int) -> bytes:
    cut = at % (len(text) + 1)
    return {
        "truncated": text[:cut],
        "garbage after": text + b" x",
        "brace after": text + b"}",
        "two objects": text + text,
        "two lines": text + b"\n" + text,
        "bom": b"\xef\xbb\xbf" + text,
        "blanks around": b" \r\n\t" + text + b"\n ",
        "single quotes": text.replace(b'"', b"'"),
        "unquoted names": text.replace(b'"index"', b"index"),
        "comment": b"/* c */" + text,
        "trailing comma": text[:-1] + b",}",
        "raw control char": text[:cut] + b"\x01" + text[cut:],
        "raw NUL": text[:cut] + b"\x00" + text[cut:],
        "raw newline": text[:cut] + b"\n" + text[cut:],
    }[how]


DAMAGE = ["truncated", "garbage after", "brace after", "two objects", "two lines", "bom", "blanks around",
          "single quotes", "unquoted names", "comment", "trailing comma", "raw control char", "raw NUL", "raw newline"]


@st.composite
def damaged_json(draw) -> Message:
    text = encode(draw(TOKENS))
    return Message(draw(KEYS), _damage(text, draw(st.sampled_from(DAMAGE)), draw(st.integers(0, 10_000))))


INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x82",
                b"\x80"]


@st.composite
def invalid_utf8(draw) -> Message:
    """A tick with bytes that are not UTF-8 somewhere in it (``\\xc0\\xaf`` is an overlong ``/``)."""
    text = encode(draw(TOKENS))
    at = draw(st.integers(0, len(text)))
    return Message(draw(KEYS), text[:at] + draw(st.sampled_from(INVALID_UTF8)) + text[at:])


@st.composite
def empty(draw) -> Message:
    value = draw(st.sampled_from([b"", b" ", b"\n", b"\t\r\n ", b"\x00", b"\x00\x00", None]))
    return Message(draw(KEYS) or b"tombstone", value)  # a tombstone (no value) needs a key


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(ANY_CHARS, max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(ANY_CHARS, max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def not_an_object(draw) -> Message:
    """JSON that is not one object with tick fields: arrays (of ticks too), scalars, other objects."""
    tick = encode(draw(TOKENS)).decode("utf-8", "surrogateescape")
    value = draw(st.one_of(
        st.sampled_from(["[]", f"[{tick}]", f"[{tick}, {tick}]", "1", '"x"', '""', "null", "true", "{}", '{"a": 1}',
                         "[null]", "1e999", f'{{"tick": {tick}}}']),
        JSON_VALUES.map(json.dumps),
    ))
    return Message(draw(KEYS), value.encode("utf-8", "surrogateescape"))


@st.composite
def deeply_nested(draw) -> Message:
    """Nesting around, inside and beside a tick: Jackson refuses more than 1000 levels."""
    depth = draw(st.sampled_from([2, 999, 1000, 1001, 5000, 50_000]))
    tokens = draw(TOKENS)
    value = draw(st.sampled_from([
        "[" * depth + "]" * depth,
        '{"a": ' * depth + "1" + "}" * depth,
        encode({**tokens, "close": "[" * depth + "1" + "]" * depth}).decode("utf-8", "surrogateescape"),
        encode({**tokens, "extra": '{"a": ' * depth + "1" + "}" * depth}).decode("utf-8", "surrogateescape"),
    ]))
    return Message(draw(KEYS), value.encode("utf-8", "surrogateescape"))


COPY_MARKERS = [b"\\.", b"\\.\n", b"a\n\\.\nb", b'"\n\\.\n"', b"\r\n\\.\r\n", b"\\N", b",", b'"', b'""', b"'",
                b"\\", b"x\r"]
"""Raw values aimed at the CSV that the PostgreSQL sink COPYs: ``\\.`` alone on a line ends COPY
data, ``\\N`` is NULL in text format, quotes and bare carriage returns end fields."""

KINDS: dict[str, tuple[st.SearchStrategy, int, int]] = {
    "valid": (valid(), 20, 60),
    "index": (with_field("index", HOSTILE_INDEX), 1, 15),
    "price": (with_field(st.sampled_from(PRICE_FIELDS), HOSTILE_NUMBER), 1, 15),
    "volume": (with_field("volume", HOSTILE_VOLUME), 1, 15),
    "date": (with_field("date", HOSTILE_DATE), 1, 15),
    "stream_ts": (with_field("stream_ts", HOSTILE_STREAM_TS), 1, 15),
    "wrong type": (with_field(st.sampled_from(FIELDS), st.sampled_from(NOT_A_NUMBER)), 1, 15),
    "missing": (missing_fields(), 1, 15),
    "null": (null_fields(), 1, 15),
    "extra": (extra_fields(), 1, 15),
    "damaged": (damaged_json(), 1, 15),
    "invalid utf-8": (invalid_utf8(), 1, 15),
    "binary": (st.builds(Message, KEYS, st.binary(min_size=1, max_size=300)), 1, 15),
    "empty": (empty(), 1, 15),
    "not an object": (not_an_object(), 1, 15),
    "nested": (deeply_nested(), 1, 6),
    "copy markers": (st.builds(Message, KEYS, st.sampled_from(COPY_MARKERS)), 1, 15),
}
"""Each kind of message: (strategy, at least, at most per example)."""

PLAIN = {"stream_ts": datetime(2026, 11, 22, 3, 4, 5, 1, tzinfo=timezone.utc), "date": date(2020, 1, 2),
         "index": "HSI", **{name: None for name in OPTIONAL_PRICES}, "close": Decimal("1.5"), "volume": 10}


def plain(**values) -> Message:
    """A valid tick that must land unchanged: :data:`PLAIN` with ``values`` changed."""
    tick = {**PLAIN, **values}
    return Message(None, encode(tokens_of(tick)), tick)


def plain_but(field: str, token: str) -> Message:
    """:data:`PLAIN` with one field's raw JSON token replaced: no promise where it lands."""
    return Message(None, encode({**tokens_of(PLAIN), field: token}))


FOUND = {
    "date": [plain_but("date", '"0000-01-01"'), plain_but("date", '"20200102"')],
    "stream_ts": [plain_but("stream_ts", '"0000-01-01T00:00:00Z"'), plain_but("stream_ts", "9223372036855")],
    "index": [plain_but("index", json.dumps("🙂" * INDEX_MAX_LENGTH))],
    "valid": [plain(), plain(index=_to_limit("🙂"))],
}
"""Failures this test found, shrunk to one message each and kept so every run checks them.

Each stopped the job (exit 1) instead of becoming a row: Spark accepted a date or time outside the
years 1-9999 (year 0, a string of digits read as days since 1970, epoch seconds that overflow)
and the PostgreSQL COPY refused it; an index of 64 four-byte characters made a 262-byte
``index=...`` directory name, beyond the file system's 255. Now they are dead letters (years
outside 1-9999, an index over 128 bytes), and the longest index that fits lands.
"""

TOPICS = st.fixed_dictionaries({
    kind: st.lists(strategy, min_size=low, max_size=high) for kind, (strategy, low, high) in KINDS.items()
})


# == Running the job on one example ==============================================================

class Services:
    """The session's broker and database, and this test's scratch directory.

    Hypothesis names every argument of a failing example in its report (and in the patch it
    offers); a short repr keeps the whole process environment out of both.
    """

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.env = env
        self.scratch = scratch

    def __repr__(self) -> str:
        return "<session broker and database>"


@pytest.fixture
def services(pipeline_env, tmp_path) -> Services:
    return Services(pipeline_env, tmp_path)


def example_env(base: dict[str, str], home: Path) -> dict[str, str]:
    """``base`` with a new topic, lake, checkpoints and state directory: examples never share them."""
    topic = f"hostile_{uuid.uuid4().hex[:10]}"
    ensure_topic(base["KAFKA_BOOTSTRAP_SERVERS"], topic, 3)
    return {**base, "KAFKA_TOPIC": topic, "LAKE_PATH": str(home / "lake"), "CHECKPOINT_DIR": str(home / "chk"),
            "STOCKPULSE_STATE_DIR": str(home / "state"), "LAKE_PARTITION_BY": "index,date"}


def send(env: dict[str, str], messages: list[Message]) -> dict[tuple[int, int], Message]:
    """Produce ``messages``; returns each one by where the broker put it (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    try:
        futures = [producer.send(env["KAFKA_TOPIC"], key=m.key, value=m.value) for m in messages]
        producer.flush()
        placed = [f.get(timeout=60) for f in futures]
    finally:
        producer.close()
    return {(meta.partition, meta.offset): m for meta, m in zip(placed, messages)}


RAW_COLUMNS = ["kafka_partition", "kafka_offset", "stream_ts::text", "date::text", "index", *PRICE_FIELDS, "volume",
               "trade_value"]


def landed(env: dict[str, str]) -> tuple[list[dict], list[tuple]]:
    """This example's ``ticks_raw`` rows (dicts) and dead letters (partition, offset, reason).

    Times come back as text: a hostile date PostgreSQL accepted may lie outside Python's calendar.
    """
    with connect(env["DATABASE_URL"]) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cursor = conn.execute(f"SELECT {', '.join(RAW_COLUMNS)} FROM ticks_raw WHERE kafka_topic = %s",
                              (env["KAFKA_TOPIC"],))
        names = [c.name for c in cursor.description]
        raw = [dict(zip(names, row)) for row in cursor.fetchall()]
        dead = conn.execute("SELECT kafka_partition, kafka_offset, reason FROM ticks_dead_letter WHERE kafka_topic = %s",
                            (env["KAFKA_TOPIC"],)).fetchall()
    return raw, dead


def lake_ids(lake: Path) -> Counter:
    table = lake_table(lake)
    if table is None:
        return Counter()
    return Counter(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist()))


def shown(ids, sent: dict[tuple[int, int], Message], limit: int = 5) -> str:
    """The first few messages behind ``ids``, for an assertion's message."""
    return "; ".join(f"{i}: {sent.get(i)!r}" for i in sorted(ids)[:limit]) + (" ..." if len(ids) > limit else "")


# == Checks ======================================================================================

def check_accounted_for(sent, raw_ids: Counter, dead_ids: Counter) -> None:
    """Every record in exactly one table, once; nothing that was not sent."""
    for table, ids in (("ticks_raw", raw_ids), ("ticks_dead_letter", dead_ids)):
        twice = {record for record, times in ids.items() if times > 1}
        assert not twice, f"in {table} more than once: {shown(twice, sent)}"
    both = raw_ids.keys() & dead_ids.keys()
    assert not both, f"in both tables: {shown(both, sent)}"
    neither = sent.keys() - raw_ids.keys() - dead_ids.keys()
    assert not neither, f"in neither table: {shown(neither, sent)}"
    unknown = (raw_ids.keys() | dead_ids.keys()) - sent.keys()
    assert not unknown, f"rows for records never sent: {sorted(unknown)[:5]}"


def check_contract(raw: list[dict], sent) -> None:
    """Every stored tick obeys the value rules the job exists to enforce."""
    for row in raw:
        where = shown([(row["kafka_partition"], row["kafka_offset"])], sent)
        for bound in BOUNDS:
            assert bound.holds(row[bound.field]), f"{bound.field} {bound.broken}: {where}"
        with localcontext() as exact:  # Python's default 28 digits would round a 37-digit product
            exact.prec = 80
            assert row["trade_value"] == row["close"] * row["volume"], f"trade_value is not close * volume: {where}"
        index = row["index"]
        assert 1 <= len(index) <= INDEX_MAX_LENGTH and len(index.encode("utf-8")) <= INDEX_MAX_BYTES, \
            f"index {index!r} beyond what the sinks hold: {where}"


def check_valid_unchanged(raw: list[dict], sent) -> None:
    """Ticks built from in-range values land in ``ticks_raw`` with every value as sent."""
    stored = {(r["kafka_partition"], r["kafka_offset"]): r for r in raw}
    for record, message in sent.items():
        if message.tick is None:
            continue
        assert record in stored, f"a valid tick did not land in ticks_raw: {shown([record], sent)}"
        row, tick = stored[record], message.tick
        assert datetime.fromisoformat(row["stream_ts"]) == tick["stream_ts"], (record, row["stream_ts"], message)
        assert date.fromisoformat(row["date"]) == tick["date"], (record, row["date"], message)
        for name in ("index", *PRICE_FIELDS, "volume"):
            assert row[name] == tick[name], (record, name, row[name], message)


def failure(result) -> str:
    """The end of the job's stderr without the JVM's stack frames, which would bury the cause."""
    lines = [line for line in result.stderr.splitlines() if not line.lstrip().startswith(("at ", "... "))]
    return f"the job stopped (exit {result.returncode}):\n" + "\n".join(lines[-25:])


@settings(
    max_examples=2, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
@given(topic_messages=TOPICS)
@example(topic_messages=FOUND)
def test_hostile_messages_never_stop_the_job_and_land_exactly_once(services, topic_messages):
    home = services.scratch / uuid.uuid4().hex[:8]
    try:
        env = example_env(services.env, home)
        sent = send(env, [m for messages in topic_messages.values() for m in messages])

        result = run_cli(["consumer/consumer.py", "--once"], env, timeout=300)
        assert result.returncode == 0, failure(result)

        raw, dead = landed(env)
        raw_ids = Counter((r["kafka_partition"], r["kafka_offset"]) for r in raw)
        check_accounted_for(sent, raw_ids, Counter((p, o) for p, o, _ in dead))
        check_contract(raw, sent)
        check_valid_unchanged(raw, sent)
        assert all(reason and reason.strip() for _, _, reason in dead), "a dead letter without a reason"
        assert lake_ids(Path(env["LAKE_PATH"])) == raw_ids, "the lake does not hold exactly the ticks_raw rows"
    finally:
        shutil.rmtree(home, ignore_errors=True)
