"""`clv-platform` command line: demo | files | withdraw-file | backtest | bench."""

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
    if os.environ.get("CLV_SOURCE", "demo") != "demo":
        print(f"note: CLV_SOURCE={os.environ['CLV_SOURCE']} is set; `demo` uses the demo store (CLV_SOURCE=demo)",
              file=sys.stderr)
    os.environ["CLV_SOURCE"] = "demo"
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
        _print_failures(result)
        return 1
    print(f"demo store materialized into {database} ({len(keys)} daily partitions)")
    return _report(result, database, elapsed)


def _print_failures(result) -> None:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data is not None:
            data = event.step_failure_data
            detail = data.user_failure_data.description if data.user_failure_data else data.error.message
            print(f"FAILED {event.step_key}: {detail}", file=sys.stderr)


def _report(result, database: Path, elapsed: float) -> int:
    import dagster as dg

    checks = result.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned_checks = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.WARN]
    rows = _summary(database)
    width = max(len(name) for name, _ in rows)
    for name, count in rows:
        print(f"  {name:<{width}}  {count:>10,}")
    passed = len(checks) - len(failed_checks) - len(warned_checks)
    print(f"asset checks: {passed} passed, {len(warned_checks)} warnings, {len(failed_checks)} failed")
    for label, group in (("warning", warned_checks), ("FAILED", failed_checks)):
        for check in group:
            print(f"  {label} {check.asset_key.to_user_string()}:{check.check_name}: {check.description}")
    print(f"run time: {elapsed:.1f} s")
    return 0


def run_files(args: argparse.Namespace) -> int:
    """A files-only store: import every export in the inbox, then build the whole graph from staging.

    Trains and registers the models when the store has none yet (or with --retrain), otherwise
    scores with the registered ones. Each file is one partition of raw/file_transactions; a file
    already imported is imported again (its rows replaced), so the command is idempotent.
    """
    if os.environ.get("CLV_SOURCE", "files") != "files":
        print(f"CLV_SOURCE={os.environ['CLV_SOURCE']} is set; `files` runs a files-only store: "
              "unset it or set CLV_SOURCE=files", file=sys.stderr)
        return 2
    os.environ["CLV_SOURCE"] = "files"

    import dagster as dg

    from clv_platform.automation.sensors import needs_training
    from clv_platform.definitions import build_definitions
    from clv_platform.ingestion.file_assets import inbox_file_partitions
    from clv_platform.ingestion.file_import import SUPPORTED_SUFFIXES
    from clv_platform.settings import load_settings

    settings = load_settings()
    database = Path(args.database).resolve() if args.database else settings.duckdb_path
    database.parent.mkdir(parents=True, exist_ok=True)
    inbox = settings.inbox_dir
    files = sorted(p.name for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                   and not p.name.startswith(".")) if inbox.is_dir() else []
    if not files and not database.exists():
        print(f"no exports in {inbox} ({', '.join(SUPPORTED_SUFFIXES)}): put your file there first", file=sys.stderr)
        return 2
    defs = build_definitions(database=str(database))
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(inbox_file_partitions.name, files)
    started = time.perf_counter()
    importer = defs.resolve_job_def("import_inbox_file")
    for name in [] if args.build_only else files:
        step = time.perf_counter()
        result = importer.execute_in_process(instance=instance, partition_key=name, raise_on_error=False,
                                             tags={"clv/trigger": "clv-platform files"})
        if not result.success:
            _print_failures(result)
            return 1
        print(f"imported {name} in {time.perf_counter() - step:.1f} s")
    if args.import_only:
        return 0
    train = args.retrain or needs_training(database, settings.models_dir)
    job = defs.resolve_job_def("rebuild_and_train" if train else "rebuild_from_staging")
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags={"clv/trigger": "clv-platform files"})
    elapsed = time.perf_counter() - started
    if not result.success:
        _print_failures(result)
        return 1
    print(f"files-only store built into {database} from {len(files)} file(s) in {inbox}"
          f" ({'models trained' if train else 'scored with the registered models'})")
    return _report(result, database, elapsed)


def withdraw_file(args: argparse.Namespace) -> int:
    """Remove every raw row of one imported file (the user still has the file; nothing else is touched).

    The next rebuild (`clv-platform files`, or the rebuild_from_staging job) drops its orders from
    staging and everything below. Move the file out of the inbox first, or the sensor imports it again
    once its content changes.
    """
    import duckdb

    from clv_platform.ingestion.store_source import ensure_meta_table
    from clv_platform.settings import load_settings

    database = Path(args.database).resolve() if args.database else load_settings().duckdb_path
    with duckdb.connect(str(database)) as conn:
        ensure_meta_table(conn)
        conn.execute(
            "create table if not exists meta.withdrawn_files (file_name varchar, rows bigint, withdrawn_at timestamp)"
        )
        conn.execute("begin transaction")
        rows = conn.execute("select count(*) from raw.file_transactions where file_name = ?", [args.file]).fetchone()[0]
        if rows == 0:
            conn.execute("rollback")
            print(f"{args.file}: no rows of this file in {database}", file=sys.stderr)
            return 1
        conn.execute("delete from raw.file_transactions where file_name = ?", [args.file])
        conn.execute("insert into meta.withdrawn_files values (?, ?, now()::timestamp)", [args.file, rows])
        conn.execute("commit")
    print(f"{args.file}: {rows} raw rows withdrawn from {database}; rebuild staging to drop its orders "
          "(clv-platform files, or the rebuild_from_staging job)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clv-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialize every asset on the built-in demo store")
    demo.add_argument("--customers", type=int, default=5000, help="demo store size (default 5000)")
    demo.add_argument("--database", help="DuckDB file (default: $CLV_DUCKDB_PATH or data/demo.duckdb)")
    demo.set_defaults(func=run_demo)

    files = sub.add_parser("files", help="files-only store: import every export in the inbox and build everything")
    files.add_argument("--database", help="DuckDB file (default: $CLV_DUCKDB_PATH or data/files.duckdb)")
    files.add_argument("--retrain", action="store_true", help="train new models even if some are registered")
    files.add_argument("--import-only", action="store_true", help="import the inbox files, build nothing")
    files.add_argument("--build-only", action="store_true", help="build from the raw rows already imported")
    files.set_defaults(func=run_files)

    withdraw = sub.add_parser("withdraw-file", help="remove every raw row of one imported file")
    withdraw.add_argument("file", help="file name as imported (the partition key), e.g. export.csv")
    withdraw.add_argument("--database", help="DuckDB file (default: $CLV_DUCKDB_PATH or data/files.duckdb)")
    withdraw.set_defaults(func=withdraw_file)

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
