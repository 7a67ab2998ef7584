"""`monitoring/model_performance` against a score history of many nights, timed in its own process.

    python -m benchmarks.performance_history STORE --snapshots 30 [--matured 30] [--workdir DIR]

The bench's stores hold one or two score snapshots; a deployed store gains one whole-store snapshot
a night and never prunes it. This copies STORE's `staging.orders` (a database file, or a folder kept by the nightly bench's `--keep-dir`) and its newest snapshot of
`monitoring.score_history` into a fresh file in `--workdir`, repeats the snapshot `--snapshots`
times on consecutive days (the `--matured` oldest with a horizon that has passed at the data's
end, the rest pending), then runs the real asset twice, each in a child process that reports its
wall seconds and peak RSS: the first run evaluates every matured scoring, the second (a night
after) finds nothing new. STORE is opened read-only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def build(store: Path, target: Path, snapshots: int, matured: int) -> dict:
    conn = duckdb.connect(str(target))
    conn.execute(f"attach '{store}' as src (read_only)")
    conn.execute("create schema staging; create schema monitoring")
    conn.execute("create table staging.orders as select customer_id, order_date, net_revenue from src.staging.orders")
    newest = conn.execute("select snapshot_id from src.monitoring.score_history "
                          "group by 1 order by max(scored_at) desc limit 1").fetchone()[0]
    end = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
    horizon = 365
    # snapshot k (k = 0 the oldest) scored at end - horizon - matured + k: the first `matured` have passed
    conn.execute(f"""
        create table monitoring.score_history as
        select 'bench@' || k as snapshot_id,
               (date '{end}' - {horizon + matured} + k::integer)::timestamp + interval 6 hour as scored_at,
               date '{end}' - {horizon + matured} + k::integer as cutoff, {horizon} as horizon_days,
               model_version, customer_id, predicted_clv, p_alive, expected_purchases, clv_tier,
               rfm_segment, lifecycle_stage, snapshotted_at
        from src.monitoring.score_history, range({snapshots}) as r(k)
        where snapshot_id = ?""", [newest])
    rows = conn.execute("select count(*) from monitoring.score_history").fetchone()[0]
    conn.execute("detach src")
    conn.close()
    return {"snapshots": snapshots, "matured": matured, "rows": int(rows), "data_end": str(end)}


def run_asset(database: Path) -> dict:
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from clv_platform.monitoring.assets import model_performance

    started = time.perf_counter()
    result = dg.materialize([model_performance], resources={"duckdb": DuckDBResource(database=str(database))})
    seconds = time.perf_counter() - started
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rows": metadata["dagster/row_count"].value,
            "evaluated_now": metadata["evaluated_now"].value if "evaluated_now" in metadata else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--snapshots", type=int, default=30)
    parser.add_argument("--matured", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--run", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run is not None:
        print(json.dumps(run_asset(args.run)))
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clv-perf-history-"))
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "history.duckdb"
    if target.exists():
        raise SystemExit(f"{target} exists: give an empty --workdir")
    store = args.store.resolve()
    if store.is_dir():  # a store kept by the nightly bench's --keep-dir
        store = store / "before_nightly.duckdb"
    shape = build(store, target, args.snapshots,
                  args.snapshots if args.matured is None else args.matured)
    print(json.dumps(shape), flush=True)
    for night in ("first run", "next run"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.performance_history", str(args.store), "--run",
                              str(target)], capture_output=True, text=True, check=True)
        print(json.dumps({"night": night, **json.loads(out.stdout.strip().splitlines()[-1])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
