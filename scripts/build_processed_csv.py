"""Rebuild ``data/indexProcessed.csv`` from Kaggle's raw "Stock Exchange Data" download.

Usage: python scripts/build_processed_csv.py --raw indexData.csv [--info data/indexInfo.csv] [--out data/indexProcessed.csv]

Why a script: the raw file has a mangled UTF-8 BOM, CRLF line ends and rows whose prices are the
string ``null`` (days an exchange was closed). The processed file drops those rows, adds
``CloseUSD`` at a fixed rate per currency (as Kaggle's processed file does: HKD x 0.13), and is
sorted by date then index so the producer can group ticks by date while streaming it.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from decimal import Decimal
from pathlib import Path

logger = logging.getLogger("build_processed_csv")

USD_RATES = {
    "USD": Decimal("1"),
    "HKD": Decimal("0.13"),  # the rate Kaggle's indexProcessed.csv uses for HSI
    "CNY": Decimal("0.15"),
    "CAD": Decimal("0.79"),
    "JPY": Decimal("0.0091"),
    "EUR": Decimal("1.2"),
    "INR": Decimal("0.014"),
    "KRW": Decimal("0.00088"),
    "CHF": Decimal("1.1"),
    "TWD": Decimal("0.036"),
    "ZAR": Decimal("0.07"),
}
"""Fixed conversion rates (approximate, 2021), so the file is reproducible without a rates API."""

RAW_COLUMNS = ["Index", "Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]


def _clean_header(header: list[str]) -> list[str]:
    # The raw file's BOM was double-encoded (bytes C3 AF C2 BB C2 BF): strip whatever precedes "Index".
    first = header[0]
    return [first[first.find("Index"):] if "Index" in first else first] + header[1:]


def load_currencies(info_path: Path) -> dict[str, str]:
    with info_path.open(newline="", encoding="utf-8-sig") as handle:
        return {row["Index"]: row["Currency"] for row in csv.DictReader(handle)}


def convert(raw_path: Path, currencies: dict[str, str]) -> tuple[list[list[str]], int]:
    """Return (processed rows sorted by date then index, number of dropped null rows)."""
    rows, dropped = [], 0
    with raw_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = _clean_header(next(reader))
        if header != RAW_COLUMNS:
            raise SystemExit(f"{raw_path}:1: expected header {','.join(RAW_COLUMNS)}, found {','.join(header)}")
        for record in reader:
            if not record:
                continue
            if "null" in record:
                dropped += 1
                continue
            index = record[0]
            rate = USD_RATES[currencies[index]]
            volume = Decimal(record[7])
            close_usd = Decimal(record[5]) * rate
            rows.append(record[:7] + [f"{float(volume)}", format(close_usd.normalize(), "f")])
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows, dropped


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="Kaggle's indexData.csv")
    parser.add_argument("--info", type=Path, default=Path("data/indexInfo.csv"), help="Kaggle's indexInfo.csv")
    parser.add_argument("--out", type=Path, default=Path("data/indexProcessed.csv"))
    args = parser.parse_args(argv)
    rows, dropped = convert(args.raw, load_currencies(args.info))
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RAW_COLUMNS + ["CloseUSD"])
        writer.writerows(rows)
    logger.info("wrote %s: %d rows, %d null rows dropped", args.out, len(rows), dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
