"""Peak memory and time of importing one large CSV export with `clv-platform files --import-only`.

    .venv/bin/python -m benchmarks.file_import_memory --lines 2000000 [--csv export.csv]

Writes an Online-Retail-II-shaped line export of N lines (Invoice, StockCode, Description, Quantity,
InvoiceDate, Price, Customer ID, Country; 20 lines an invoice, a credit note every 50th invoice, a
guest line every 40th, times in the 2009-2011 range), or reads ``--csv`` as it is, then imports it
into a fresh files store in a child process (`clv-platform files --import-only`, the command a user
runs) and prints the child's wall time and peak RSS, the file's size and the rows stored. The
import reads a CSV a batch of rows at a time (`file_import.read_export`), so the peak should not
grow with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd


def write_export(path: Path, lines: int, seed: int = 0) -> None:
    """An Online-Retail-II-shaped CSV of ``lines`` lines, written 500,000 lines at a time."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2009-12-01 07:45")
    span_minutes = int((pd.Timestamp("2011-12-09 12:50") - start) / pd.Timedelta(minutes=1))
    block = 500_000
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n")
        for first in range(0, lines, block):
            n = min(block, lines - first)
            row = np.arange(first, first + n)
            invoice = 489434 + row // 20
            credit = invoice % 50 == 0
            code = 20000 + rng.integers(0, 3000, n)
            quantity = rng.integers(1, 25, n) * np.where(credit, -1, 1)
            minutes = (invoice - 489434) * span_minutes // max(lines // 20, 1)
            dates = (start + pd.to_timedelta(minutes, unit="min")).strftime("%Y-%m-%d %H:%M:%S")
            customer = np.where(invoice % 40 == 0, "", (12346 + invoice % 5900).astype(str) + ".0")
            frame = pd.DataFrame({
                "Invoice": np.where(credit, "C", "") + invoice.astype(str),
                "StockCode": code.astype(str),
                "Description": "ITEM " + code.astype(str),
                "Quantity": quantity,
                "InvoiceDate": dates,
                "Price": np.round(np.exp(rng.normal(0.8, 0.8, n)), 2),
                "Customer ID": customer,
                "Country": np.where(invoice % 7 == 0, "France", "United Kingdom"),
            })
            frame.to_csv(out, header=False, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--csv", type=Path, help="import this file instead of writing one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clv-file-import-bench-") as folder:
        root = Path(folder)
        inbox = root / "inbox"
        inbox.mkdir()
        path = inbox / (args.csv.name if args.csv else "online_retail_ii.csv")
        if args.csv:
            os.symlink(args.csv.resolve(), path)
        else:
            started = time.perf_counter()
            write_export(path, args.lines)
            print(f"wrote {args.lines:,} lines in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        (root / ".dagster").mkdir()
        env = {**os.environ, "CLV_SOURCE": "files", "CLV_FILE_CURRENCY": "GBP", "CLV_DATA_DIR": str(root),
               "CLV_INBOX_DIR": str(inbox), "DAGSTER_HOME": str(root / ".dagster")}
        command = [str(Path(sys.executable).with_name("clv-platform")), "files", "--import-only"]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"the import failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with duckdb.connect(str(root / "files.duckdb"), read_only=True) as conn:
            rows = conn.execute("select count(*) from raw.file_transactions").fetchone()[0]
        print(json.dumps({"file_mb": round(path.stat().st_size / 2**20, 1), "rows_stored": rows,
                          "import_seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb)}))


if __name__ == "__main__":
    main()
