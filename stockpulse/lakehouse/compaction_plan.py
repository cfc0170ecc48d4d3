"""What the compaction job will do, decided from listings alone (no I/O here).

The raw zone is what Spark's file sink writes: with the default ``index,date`` layout one file
per partition per micro-batch, which during a replay means one file per row. Compaction groups
those files into *units* and writes each unit's uncovered files as one Parquet file in the
compacted zone:

- a unit is the raw partition with its ``date`` widened to the year (``index=HSI/date=2020-01-02``
  belongs to ``index=HSI/year=2020``), so a compacted file holds a year of one index instead of
  a day, and its name still tells a reader what is inside;
- a unit is *closed*, and compacted, when the stream has moved past it (the same index has a
  later year) or nothing was written to it for ``min_age`` seconds. A unit the stream is still
  filling is left alone, so the job never races the writer for the same files. A layout without
  ``date`` (``LAKE_PARTITION_BY=index`` or ``none``) has no year to close: there every file at
  least ``min_age`` old is taken, so each run merges what landed since the previous one;
- a raw file is compacted once: the log entry that covers it records its name. Files that arrive
  later in a compacted unit become another compacted file beside the first, never a rewrite, so
  every compacted file is written once and readers that list directories can never see a row in
  two of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

YEAR = "year"
DATE = "date"
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
"""Most raw bytes one compacted file is made from: raw files are uncompressed-ish Parquet of a few
rows each, so this gives compacted files of tens of MB at most, and bounds the job's memory."""


@dataclass(frozen=True)
class RawFile:
    """One committed part file of the raw zone, as listed."""

    path: str  # relative to the raw zone's root, '/'-separated
    size: int
    mtime: float  # seconds since the epoch


@dataclass(frozen=True)
class Task:
    """One compacted file to write: from ``inputs`` (relative raw paths) to ``output``."""

    unit: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    output: str  # relative to the compacted zone's root

    @property
    def name(self) -> str:
        """The log entry's name: the output file's stem."""
        return self.output.rsplit("/", 1)[-1].removesuffix(".parquet")


@dataclass(frozen=True)
class Entry:
    """A committed log entry of the compacted zone (``_compaction/<name>.json``)."""

    name: str
    unit: tuple[tuple[str, str], ...]
    output: str
    inputs: tuple[str, ...]
    rows: int
    checksum: str
    committed_at: float
    extra: Mapping = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"unit": dict(self.unit), "output": self.output, "inputs": list(self.inputs),
                           "rows": self.rows, "checksum": self.checksum, "committed_at": self.committed_at,
                           **self.extra}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, name: str, text: str) -> "Entry":
        data = json.loads(text)
        return cls(name=name, unit=tuple(data["unit"].items()), output=data["output"],
                   inputs=tuple(data["inputs"]), rows=int(data["rows"]), checksum=data["checksum"],
                   committed_at=float(data["committed_at"]))


def partition_of(relative_path: str) -> tuple[tuple[str, str], ...]:
    """The Hive partition values in a relative path: ``index=HSI/date=2020-01-02/part-0.parquet``
    gives ``(("index", "HSI"), ("date", "2020-01-02"))``. Spark escapes special characters in
    values as ``%XX``; they are unescaped here."""
    pairs = []
    for part in relative_path.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep:
            pairs.append((key, unquote(value)))
    return tuple(pairs)


def unit_of(partition: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The compaction unit of a raw partition: its ``date`` becomes ``year``."""
    return tuple((YEAR, value[:4]) if key == DATE else (key, value) for key, value in partition)


def unit_path(unit: tuple[tuple[str, str], ...]) -> str:
    """The unit's directory in the compacted zone, escaped as Spark escapes partition values."""
    return "/".join(f"{key}={escape(value)}" for key, value in unit)


def escape(value: str) -> str:
    """Percent-escape what cannot stand in a path segment (as Spark does for ``/``, ``=``, ``%``...)."""
    special = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(0x20)}
    return "".join(f"%{ord(ch):02X}" if ch in special else ch for ch in value)


def covered(entries: Iterable[Entry]) -> set[str]:
    """Raw files some committed entry already compacted."""
    return {path for entry in entries for path in entry.inputs}


def closed_units(files: Iterable[RawFile], now: float, min_age: float) -> set[tuple[tuple[str, str], ...]]:
    """Units the stream has left: a later year exists for the same other keys, or the unit's
    newest file is at least ``min_age`` seconds old."""
    newest: dict[tuple, float] = {}
    for f in files:
        unit = unit_of(partition_of(f.path))
        newest[unit] = max(newest.get(unit, 0.0), f.mtime)
    latest_year: dict[tuple, str] = {}
    for unit in newest:
        year = dict(unit).get(YEAR)
        if year is not None:
            others = tuple(kv for kv in unit if kv[0] != YEAR)
            latest_year[others] = max(latest_year.get(others, year), year)
    closed = set()
    for unit, mtime in newest.items():
        year = dict(unit).get(YEAR)
        others = tuple(kv for kv in unit if kv[0] != YEAR)
        superseded = year is not None and latest_year[others] > year
        if superseded or now - mtime >= min_age:
            closed.add(unit)
    return closed


def output_name(unit: tuple[tuple[str, str], ...], inputs: Iterable[str]) -> str:
    """A name that depends only on what goes in: a rerun of a killed task writes the same file."""
    digest = hashlib.sha256(json.dumps([list(unit), sorted(inputs)]).encode()).hexdigest()[:20]
    return f"part-{digest}.parquet"


def chunks(files: list[RawFile], max_bytes: int) -> list[list[RawFile]]:
    """Split one unit's files, in path order, into groups of at most ``max_bytes`` (one file
    larger than that is a group of its own)."""
    groups: list[list[RawFile]] = []
    size = 0
    for f in sorted(files, key=lambda f: f.path):
        if not groups or (size + f.size > max_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += f.size
    return groups


def plan(files: Iterable[RawFile], entries: Iterable[Entry], now: float, min_age: float,
         max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> list[Task]:
    """The tasks of one run: the uncovered files of every closed unit, grouped into outputs."""
    files = list(files)
    done = covered(entries)
    pending = [f for f in files if f.path not in done]
    closed = closed_units(files, now, min_age)
    by_unit: dict[tuple, list[RawFile]] = {}
    for f in pending:
        unit = unit_of(partition_of(f.path))
        dated = YEAR in dict(unit)
        if (dated and unit in closed) or (not dated and now - f.mtime >= min_age):
            by_unit.setdefault(unit, []).append(f)
    tasks = []
    for unit in sorted(by_unit):
        for group in chunks(by_unit[unit], max_input_bytes):
            inputs = tuple(f.path for f in group)
            directory = unit_path(unit)
            name = output_name(unit, inputs)
            tasks.append(Task(unit, inputs, f"{directory}/{name}" if directory else name))
    return tasks


def deletable(entries: Iterable[Entry], present: set[str], now: float, grace: float) -> list[str]:
    """Raw files to delete now: compacted by an entry committed at least ``grace`` seconds ago,
    and still there. The grace lets a reader that planned its file list just before the commit
    finish reading the raw files it chose."""
    return sorted(p for e in entries if now - e.committed_at >= grace for p in e.inputs if p in present)


def relative_to(root_path: str, uri: str) -> str | None:
    """``uri`` (a path or ``scheme://host/path`` URI as Spark logs it) relative to ``root_path``
    (the path part of the zone's location); None when it lies elsewhere."""
    from urllib.parse import urlparse

    path = unquote(urlparse(uri).path)
    if urlparse(uri).scheme not in ("", "file"):
        path = unquote(urlparse(uri).netloc + urlparse(uri).path)
    root = root_path.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else None


def committed_paths(log_texts: Iterable[str], root_path: str) -> set[str]:
    """Raw files the file sink's log lists as added (and not deleted), relative to the zone root.

    Each log file is a version line then one JSON entry per file; ``N.compact`` files repeat every
    earlier entry, so a union over the files read is the committed set.
    """
    added: set[str] = set()
    deleted: set[str] = set()
    for text in log_texts:
        for line in text.splitlines()[1:]:
            if not line.strip():
                continue
            entry = json.loads(line)
            relative = relative_to(root_path, entry["path"])
            if relative is not None:
                (deleted if entry.get("action") == "delete" else added).add(relative)
    return added - deleted


def log_files_to_read(names: Iterable[str]) -> list[str]:
    """Of the sink log's file names, the ones that together list every committed file: the newest
    ``N.compact`` and every plain batch file after it (older ones are repeated in it)."""
    batches = []
    for name in names:
        stem, _, suffix = name.partition(".")
        if stem.isdigit() and suffix in ("", "compact"):
            batches.append((int(stem), name))
    compacts = [n for n, name in batches if name.endswith(".compact")]
    start = max(compacts) if compacts else -1
    return [name for n, name in sorted(batches) if n > start or (n == start and name.endswith(".compact"))]
