"""`clv-platform` command line: demo | backtest | bench."""

import argparse
import os
import sys
import time
from pathlib import Path


def _summary(database: Path) -> list[tuple[str, int]]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as conn:
        tables = conn.execute(
            """
            select table_schema || '.' || table_name from information_schema.tables
            where table_type = 'BASE TABLE' order by 1
            """
        ).fetchall()
        return [(name, conn.execute(f"select count(*) from {name}").fetchone()[0]) for (name,) in tables]


def run_demo(args: argparse.Namespace) -> int:
    """Materialize the whole graph on the demo store, in this process, into the DuckDB file."""
    os.environ.setdefault("CLV_DEMO_CUSTOMERS", str(args.customers))
    for var in ("SHOPIFY_ACCESS_TOKEN", "KLAVIYO_API_KEY"):
        if os.environ.get(var):
            print(f"note: {var} is set; `demo` ignores it and uses the built-in demo store", file=sys.stderr)
            os.environ.pop(var)

    import dagster as dg

    from clv_platform.definitions import build_definitions
    from clv_platform.ingestion.assets import shopify_daily_partitions
    from clv_platform.resources.storage import duckdb_path

    database = Path(args.database).resolve() if args.database else duckdb_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(database=str(database))
    job = defs.resolve_job_def("refresh_everything")
    keys = shopify_daily_partitions.get_partition_keys()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()

    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
            "clv/trigger": "make demo",
        },
        raise_on_error=False,
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_failure_data is not None:
                print(f"FAILED {event.step_key}: {event.step_failure_data.error.message}", file=sys.stderr)
        return 1

    checks = result.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned_checks = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.WARN]
    rows = _summary(database)
    width = max(len(name) for name, _ in rows)
    print(f"demo store materialized into {database} ({len(keys)} daily partitions)")
    for name, count in rows:
        print(f"  {name:<{width}}  {count:>10,}")
    passed = len(checks) - len(failed_checks) - len(warned_checks)
    print(f"asset checks: {passed} passed, {len(warned_checks)} warnings, {len(failed_checks)} failed")
    for label, group in (("warning", warned_checks), ("FAILED", failed_checks)):
        for check in group:
            print(f"  {label} {check.asset_key.to_user_string()}:{check.check_name}: {check.description}")
    print(f"run time: {elapsed:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clv-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialize every asset on the built-in demo store")
    demo.add_argument("--customers", type=int, default=5000, help="demo store size (default 5000)")
    demo.add_argument("--database", help="DuckDB file (default: $CLV_DUCKDB_PATH or data/clv.duckdb)")
    demo.set_defaults(func=run_demo)

    from clv_platform import backtest_cli, bench

    backtest = sub.add_parser("backtest", help="backtest BTYD, XGBoost and hybrid CLV (and next purchase) models")
    backtest_cli.add_arguments(backtest)
    backtest.set_defaults(func=backtest_cli.run)

    bench_parser = sub.add_parser("bench", help="time every stage of a full refresh on a generated store")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=bench.run_from_args)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
