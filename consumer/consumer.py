"""Stream ticks from Kafka into the Parquet lake and PostgreSQL with Spark Structured Streaming.

Usage: spark-submit consumer/consumer.py [--once]      (or: python consumer/consumer.py [--once] [--master URL])

You should see one log line per micro-batch and sink, e.g.
``postgres batch 3: 1412 records, 1412 new ticks, 0 new dead letters ...``; Parquet files appear
under lake/parquet/index=<INDEX>/date=<YYYY-MM-DD>/. Stop it with Ctrl-C; restarting it resumes
from the checkpoints in chk/ with nothing lost or duplicated.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stockpulse import logs  # noqa: E402
from stockpulse.stream.cli import main  # noqa: E402

if __name__ == "__main__":
    logs.configure()
    sys.exit(main())
