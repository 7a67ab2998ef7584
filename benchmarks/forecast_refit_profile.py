"""Time the revenue forecast's refit (``build_revenue_forecast(conn, refit=True)``) on a copy of a kept store.

The refit reads every order (seasonal index, rehearsal); a night that reuses the stored fit does
not, so the nightly profile rarely shows it. Run on a copy (the refit writes ``ml.stored_fits``):

    cp data/bench-keep/300000/before_nightly.duckdb /tmp/store.duckdb
    .venv/bin/python -m benchmarks.forecast_refit_profile /tmp/store.duckdb [--table out.csv] [--reuse]

One refit per process (so the peak RSS is the refit's plus the loaded code), with the bench's
DuckDB settings (2 threads, the platform's memory limit). To time another version of the code,
put its source first on PYTHONPATH (``git archive <rev> | tar -x -C /tmp/old``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import duckdb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path, help="a copy of a kept store (it is written to)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="write the forecast table here (CSV)")
    parser.add_argument("--reuse", action="store_true", help="a night's run instead: reuse the stored fit "
                        "when it is fresh (as after a refit on the same copy)")
    args = parser.parse_args(argv)

    import clv_platform
    from benchmarks import bench
    from clv_platform.marts.forecast_assets import build_revenue_forecast

    conn = duckdb.connect(str(args.database))
    conn.execute(f"set threads = {int(args.threads)}")
    conn.execute("set memory_limit = ?", [bench.default_memory_limit()])
    conn.execute("set preserve_insertion_order = false")
    conn.execute("set enable_progress_bar = false")
    wall, cpu = time.perf_counter(), time.process_time()
    table, facts = build_revenue_forecast(conn, refit=not args.reuse)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.table:
        table.to_csv(args.table, index=False)
    print(f"{Path(clv_platform.__file__).parent.parent}: refit {facts['fit']['fit']} wall {wall:.1f} s  "
          f"cpu {cpu:.1f} s  peak RSS {peak_mb:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
