"""Reset the pipeline's outputs: the Parquet lake, the checkpoints and, optionally, the tables.

The lake and its checkpoint must go together: Spark's file sink remembers committed batch ids in
``lake/parquet/_spark_metadata``, so a fresh checkpoint writing into an old lake would skip its
first batches as "already committed". That is why there is no option to wipe only one of them.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from stockpulse.config import SINKS, PROJECT_ROOT, ConsumerSettings, LakehouseSettings, PostgresSettings, local_path, redact_url
from stockpulse.errors import ConfigError, StockPulseError

logger = logging.getLogger(__name__)


def targets(settings: ConsumerSettings, lakehouse: LakehouseSettings | None = None) -> list[Path]:
    """What gets deleted: the lake directory, each sink's checkpoint directory, and the layers
    built from the lake (the compacted zone, the marts), local only. The later layers go too:
    after a reset the stream writes every tick again, and an old compacted zone beside the new
    raw zone would hold each of them twice."""
    lakehouse = lakehouse or LakehouseSettings.from_env()
    locations = [settings.lake_path, *(settings.checkpoint(sink) for sink in SINKS), lakehouse.compacted_path,
                 str(lakehouse.analytics_db)]
    paths = [local_path(location) for location in locations]
    remote = [location for location, path in zip(locations, paths) if path is None]
    if remote:
        raise ConfigError(f"{remote[0]} is not on this machine: clear_outputs.py resets local outputs only; "
                          "delete remote lakes and checkpoints with your storage's own tools")
    return paths


def wipe(paths: list[Path]) -> list[Path]:
    """Delete ``paths``; restore ``.gitkeep`` in the project's own lake/ and chk/ folders."""
    removed = []
    for path in paths:
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    for keep in (PROJECT_ROOT / "lake", PROJECT_ROOT / "chk"):
        keep.mkdir(exist_ok=True)
        (keep / ".gitkeep").touch()
    return removed


def truncate_tables(url: str) -> None:
    from stockpulse.db import connect

    with connect(url) as conn:
        conn.execute("TRUNCATE ticks_raw, ticks_dead_letter")
        conn.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clear_outputs.py",
        description="Delete the Parquet lake, the Spark checkpoints, the compacted zone and the dbt marts "
                    "(stop the consumer first).",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before deleting")
    parser.add_argument("--truncate", action="store_true", help="also empty ticks_raw and ticks_dead_letter")
    args = parser.parse_args(argv)
    try:
        settings = ConsumerSettings.from_env()
        paths = targets(settings)
        what = [str(p) for p in paths]
        url = PostgresSettings.from_env().url
        if args.truncate:
            what.append(f"tables ticks_raw, ticks_dead_letter in {redact_url(url)}")
        if not args.yes:
            if not sys.stdin.isatty():
                print("clear_outputs: refusing to delete without a terminal to ask on: pass --yes", file=sys.stderr)
                return 2
            answer = input("Delete:\n  " + "\n  ".join(what) + "\nType 'yes' to continue: ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        removed = wipe(paths)
        if args.truncate:
            truncate_tables(url)
        print(f"removed {len(removed)} of {len(paths)} directories" + (" and emptied the tables" if args.truncate else ""))
    except StockPulseError as exc:
        print(f"clear_outputs: error: {exc}", file=sys.stderr)
        return 2
    return 0
