"""Run the nightly selection again and again on one kept store, step by step (and optionally under cProfile).

`make bench ARGS="--customers 300000 --mode nightly --keep-dir data/bench-keep"` leaves
`data/bench-keep/300000/before_nightly.duckdb` (full refresh done, one day appended) and the run's
data folder. This script copies them to a fresh folder, points the registry's model paths at the
copy, and runs the nightly selection (or `--select` asset keys of it) with the real assets, so a
change to one step can be timed before and after on the same data:

    .venv/bin/python -m benchmarks.nightly_profile data/bench-keep/300000 [--select marts/cohort_retention ...]
        [--profile out.prof] [--sql-timings] [--repeat N [--advance-day]] [--staging-only] [--checkpoint]

`--sql-timings` logs every `conn.execute` that takes more than 0.2 s with its first line of SQL.
`--repeat N` runs the selection N times on the same copy and prints each run: a step that keeps
state for the next night (the BTYD interval cache, ``btyd_intervals``) is cold in the first run and
warm after it. With `--advance-day`, the staging merge and the feature table are materialized
(untimed) after the first run, so the later runs score the kept appended day (cutoff one day later,
as a real next night) instead of the same cutoff again.
`--staging-only` runs just the staging merge (`staging_tables`, every one of its output keys).
`--checkpoint` ends each run with an explicit `CHECKPOINT`, timed and counted in the total and the
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
    from clv_platform.transforms.features_assets import CUSTOMER_FEATURES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, help="a --keep-dir folder of one store size")
    parser.add_argument("--select", nargs="*", default=None, help="asset keys (a/b) of the nightly to run; "
                        "default: the whole nightly selection after staging")
    parser.add_argument("--with-staging", action="store_true", help="also run the staging merge")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    parser.add_argument("--sql-timings", action="store_true")
    parser.add_argument("--sql-threshold", type=float, default=0.2,
                        help="with --sql-timings: log statements slower than this many seconds")
    parser.add_argument("--staging-only", action="store_true", help="run only the staging merge")
    parser.add_argument("--checkpoint", action="store_true", help="end with a timed CHECKPOINT (in the total)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="run the selection this many times on one copy")
    parser.add_argument("--advance-day", action="store_true",
                        help="after the first run, merge the kept appended day into staging and features")
    args = parser.parse_args(argv)

    nightly_selection, _ = nightly.run_selection("nightly")
    if args.staging_only:
        selection = dg.AssetSelection.groups("staging")
    elif args.select:
        selection = dg.AssetSelection.assets(*[dg.AssetKey(k.split("/")) for k in args.select])
    elif args.with_staging:
        selection = nightly_selection
    else:
        selection = nightly_selection - dg.AssetSelection.groups("staging")
    with tempfile.TemporaryDirectory(prefix="clv-nightly-profile-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        _copy_store(args.kept, workdir)  # to workdir/bench.duckdb, which nightly._open opens
        # the copy's 3 GB sit dirty in the page cache: without a sync here the first checkpoint's
        # fsync writes them back (4-5 s of the staging merge's commit at 300k were this, not DuckDB)
        os.sync()
        memory_limit = bench.default_memory_limit()
        conn = nightly._open(workdir, args.threads, memory_limit)
        _repoint_models(conn, workdir)
        print(f"copied the store in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        run_conn = _TimedConnection(conn, args.sql_threshold) if args.sql_timings else conn
        profiler = cProfile.Profile() if args.profile else None
        runs = []
        try:
            for run in range(max(1, args.repeat)):
                if run == 1 and args.advance_day:
                    advanced = time.perf_counter()
                    nightly._dagster_run(run_conn, workdir, "advance", dg.AssetSelection.groups("staging")
                                         | dg.AssetSelection.assets(CUSTOMER_FEATURES), None, memory_limit)
                    print(f"advanced staging and features by the kept day in {time.perf_counter() - advanced:.1f} s",
                          file=sys.stderr)
                cpu, times = time.process_time(), os.times()
                profiling = profiler is not None and run == max(1, args.repeat) - 1
                if profiling:  # the steady state only: the last run of --repeat
                    profiler.enable()
                # released between steps as in the bench's runs (each asset's own connection closes)
                timing = nightly._dagster_run(run_conn, workdir, "nightly", selection, None, memory_limit)
                if args.checkpoint:
                    checkpoint_started = time.perf_counter()
                    conn.execute("checkpoint")
                    timing.steps["CHECKPOINT"] = time.perf_counter() - checkpoint_started
                    timing.seconds += timing.steps["CHECKPOINT"]
                if profiling:
                    profiler.disable()
                after = os.times()
                runs.append((timing, time.process_time() - cpu, after.user - times.user, after.system - times.system))
        finally:
            if profiler:
                profiler.dump_stats(str(args.profile))
            conn.close()
    for run, (timing, cpu, user, system) in enumerate(runs, start=1):
        if len(runs) > 1:
            print(f"run {run}:")
        for step, seconds in timing.steps.items():
            cpu_step = timing.step_cpu_seconds.get(step)
            print(f"  {step:<44}{seconds:8.2f}" + (f"   cpu {cpu_step:.1f} s" if cpu_step is not None else ""))
        print(f"  {'total (run)':<44}{timing.seconds:8.2f}   cpu {cpu:.1f} s (user {user:.1f}, system {system:.1f})"
              f"   peak RSS {timing.peak_rss_mb} MB")
        print(json.dumps({"run": run, "steps": timing.steps, "seconds": timing.seconds, "cpu_seconds": cpu,
                          "user_seconds": user, "system_seconds": system, "peak_rss_mb": timing.peak_rss_mb,
                          "fits": timing.fits, "interval_keys": timing.interval_keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
