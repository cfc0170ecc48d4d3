"""Replay stock-index history from a CSV into Kafka as live ticks.

Usage: python producer/producer.py [--csv data/indexProcessed.csv] [--tick-interval 1.0] [--limit N] [--loop]

You should see a progress bar (on a terminal) and, at the end, one line such as
``sent 120 ticks (433 rows) in 119.2 s, 0 bad rows, 0 failed sends, 4 rows/s``.
Bad CSV rows are logged with file and line number and skipped; a missing file or a wrong header
is a one-line error with exit code 2.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stockpulse import logs  # noqa: E402
from stockpulse.replay.producer import main  # noqa: E402

if __name__ == "__main__":
    logs.configure()
    sys.exit(main())
