"""Run the nightly selection again and again on one kept store, step by step (and optionally under cProfile).

`make bench ARGS="--customers 300000 --mode nightly --keep-dir data/bench-keep"` leaves
`data/bench-keep/300000/before_nightly.duckdb` (full refresh done, one day appended) and the run's
data folder. This script copies them to a fresh folder, points the registry's model paths at the
copy, and runs the nightly selection (or `--select` asset keys of it) with the real assets, so a
change to one step can be timed before and after on the same data:

    .venv/bin/python -m benchmarks.nightly_profile data/bench-keep/300000 [--select marts/cohort_retention ...]
        [--profile out.prof] [--sql-timings] [--staging-only] [--checkpoint]

`--sql-timings` logs every `conn.execute` that takes more than 0.2 s with its first line of SQL.
`--staging-only` runs just the staging merge (`staging_tables`, every one of its output keys).
`--checkpoint` ends the run with an explicit `CHECKPOINT`, timed and counted in the total and the
CPU: DuckDB writes what the WAL still holds at a checkpoint (at a commit past
`checkpoint_threshold`, or at close), so a change that only moves that write to a later commit or
to the close must not look like a saving.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def _copy_store(kept: Path, workdir: Path) -> Path:
    for item in kept.iterdir():
        target = workdir / ("bench.duckdb" if item.name == "before_nightly.duckdb" else item.name)
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    return workdir / "bench.duckdb"


def _repoint_models(conn: duckdb.DuckDBPyConnection, workdir: Path) -> None:
    """The registry keeps absolute paths of the bench's temporary folder: point them at the copy."""
    if not conn.execute("select count(*) from duckdb_tables() where schema_name = 'ml' and table_name = 'model_runs'"
                        ).fetchone()[0]:
        return
    for (path,) in conn.execute("select distinct path from ml.model_runs where path is not null").fetchall():
        parts = Path(path).parts
        if "models" in parts:
            new = workdir.joinpath(*parts[parts.index("models"):])
            conn.execute("update ml.model_runs set path = ? where path = ?", [str(new), path])


class _TimedConnection:
    """Wraps a DuckDB connection: logs statements slower than `threshold` seconds."""

    def __init__(self, conn, threshold: float = 0.2):
        self._conn, self._threshold = conn, threshold

    def execute(self, sql, *args, **kwargs):
        started = time.perf_counter()
        out = self._conn.execute(sql, *args, **kwargs)
        took = time.perf_counter() - started
        if took >= self._threshold:
            first = " ".join(str(sql).split())[:110]
            print(f"    sql {took:6.2f} s  {first}", file=sys.stderr)
        return self

    def cursor(self):
        return _TimedConnection(self._conn.cursor(), self._threshold)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def main(argv: list[str] | None = None) -> int:
    import dagster as dg

    from benchmarks import bench, nightly
    from clv_platform.automation.jobs import MODEL_TRAINING

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, help="a --keep-dir folder of one store size")
    parser.add_argument("--select", nargs="*", default=None, help="asset keys (a/b) of the nightly to run; "
                        "default: the whole nightly selection after staging")
    parser.add_argument("--with-staging", action="store_true", help="also run the staging merge")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    parser.add_argument("--sql-timings", action="store_true")
    parser.add_argument("--staging-only", action="store_true", help="run only the staging merge")
    parser.add_argument("--checkpoint", action="store_true", help="end with a timed CHECKPOINT (in the total)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from_staging = dg.AssetSelection.groups("staging").downstream()
    if args.staging_only:
        selection = dg.AssetSelection.groups("staging")
    elif args.select:
        selection = dg.AssetSelection.keys(*[dg.AssetKey(k.split("/")) for k in args.select])
    elif args.with_staging:
        selection = from_staging - MODEL_TRAINING
    else:
        selection = from_staging - MODEL_TRAINING - dg.AssetSelection.groups("staging")
    with tempfile.TemporaryDirectory(prefix="clv-nightly-profile-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        database = _copy_store(args.kept, workdir)
        # the copy's 3 GB sit dirty in the page cache: without a sync here the first checkpoint's
        # fsync writes them back (4-5 s of the staging merge's commit at 300k were this, not DuckDB)
        os.sync()
        conn = duckdb.connect(str(database))
        conn.execute(f"set threads = {int(args.threads)}")
        memory_limit = bench.default_memory_limit()
        conn.execute("set memory_limit = ?", [memory_limit])
        conn.execute("set preserve_insertion_order = false")
        conn.execute("set enable_progress_bar = false")
        _repoint_models(conn, workdir)
        print(f"copied the store in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        run_conn = _TimedConnection(conn) if args.sql_timings else conn
        profiler = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        try:
            if profiler:
                profiler.enable()
            # released between steps as in the bench's runs (each asset's own connection closes)
            timing = nightly._dagster_run(run_conn, workdir, "nightly", selection, None, memory_limit)
            if args.checkpoint:
                checkpoint_started = time.perf_counter()
                conn.execute("checkpoint")
                timing.steps["CHECKPOINT"] = time.perf_counter() - checkpoint_started
                timing.seconds += timing.steps["CHECKPOINT"]
        finally:
            if profiler:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            conn.close()
        cpu = time.process_time() - cpu
    steps = timing.steps
    for step, seconds in steps.items():
        print(f"  {step:<44}{seconds:8.2f}")
    print(f"  {'total (run)':<44}{timing.seconds:8.2f}   cpu {cpu:.1f} s   peak RSS {timing.peak_rss_mb} MB")
    print(json.dumps({"steps": steps, "seconds": timing.seconds, "cpu_seconds": cpu,
                      "peak_rss_mb": timing.peak_rss_mb, "fits": timing.fits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
