"""A store for `benchmarks.staging_profile`: the demo store's raw tables at N customers and staging only.

    python -m benchmarks.staging_store --customers 300000 data/staging-300000.duckdb

The merge profile needs raw and staging, not the models: `make bench --mode nightly --keep-dir`
gives the same tables but trains every model first (20-30 minutes at 300k on the shared machine).
This writes the demo store's raw tables, builds staging from all of them
(`build_staging(full_rebuild=True)`, as the full refresh does) and appends one day
(`benchmarks.nightly.append_day`), so the file has the shape of the bench's
`before_nightly.duckdb` as far as staging is concerned. An existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

import duckdb

from benchmarks.bench import default_memory_limit, default_threads
from benchmarks.nightly import append_day
from clv_platform.ingestion.demo_store import DemoStoreParams, generate
from clv_platform.transforms.staging import build_staging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("store", type=Path)
    parser.add_argument("--timezone", default="UTC",
                        help="the store time zone the staging asset passes (as `staging_profile --timezone`)")
    args = parser.parse_args(argv)
    if args.store.exists():
        parser.error(f"{args.store} exists; pick another path (the store is never overwritten)")
    args.store.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(args.store), config={"memory_limit": default_memory_limit(),
                                                   "preserve_insertion_order": False})
    try:
        conn.execute(f"set threads = {int(default_threads())}")
        started = time.perf_counter()
        rows = generate(DemoStoreParams(n_customers=args.customers)).write_raw_tables(
            conn, datetime.now().replace(microsecond=0))
        print(f"raw tables {rows} in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        result = build_staging(conn, None, args.timezone, full_rebuild=True)
        print(f"full staging build in {time.perf_counter() - started:.1f} s: {result.row_counts}")
        print(append_day(conn))
        conn.execute("checkpoint")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
