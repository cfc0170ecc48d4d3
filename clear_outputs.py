"""Wipe the Parquet lake and the Spark checkpoints, keeping lake/.gitkeep and chk/.gitkeep.

Usage: python clear_outputs.py [--yes] [--truncate]

Stop the consumer first (make down). Asks before deleting unless --yes; --truncate also
empties ticks_raw and ticks_dead_letter.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stockpulse import logs  # noqa: E402
from stockpulse.ops.outputs import main  # noqa: E402

if __name__ == "__main__":
    logs.configure()
    sys.exit(main())
