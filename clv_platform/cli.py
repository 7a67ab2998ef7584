"""`clv-platform` command line: demo | files | withdraw-file | backtest (the benchmark is `make bench`)."""

import argparse
import logging
import os
import sys
import time
from datetime import datetime, timezone
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


def demo_loggers(log_path: Path, out=None) -> dict:
    """Dagster logger definitions for `demo`: every event to a file, one progress line per asset.

    The console gets a line per materialized asset (with its row count), per failed step and per
    failed or warning check, instead of Dagster's ~1,000 DEBUG/INFO lines; the full log (what the
    UI shows under the run) goes to `log_path`.
    """
    import dagster as dg

    out = out or sys.stdout
    started = time.perf_counter()

    class Progress(logging.Handler):
        """Collects a step's materializations (a partitioned asset has one per partition) and
        prints them when the step succeeds; failures and failed checks are printed at once."""

        def __init__(self) -> None:
            super().__init__()
            self.pending: dict[str, dict[str, dict]] = {}

        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "dagster_meta", {}).get("dagster_event")
            if event is None:
                return
            elapsed = f"{time.perf_counter() - started:7.1f}s"
            if event.is_step_materialization:
                materialization = event.event_specific_data.materialization
                rows = materialization.metadata.get("dagster/row_count")
                seen = self.pending.setdefault(event.step_key or "", {}).setdefault(
                    materialization.asset_key.to_user_string(), {"partitions": 0, "rows": None}
                )
                seen["partitions"] += 1 if materialization.partition else 0
                seen["rows"] = rows.value if rows is not None else seen["rows"]
            elif event.is_step_success:
                for key, seen in sorted(self.pending.pop(event.step_key or "", {}).items()):
                    detail = f"  {seen['rows']:,} rows" if seen["rows"] is not None else ""
                    if seen["partitions"]:
                        detail += f" ({seen['partitions']:,} partitions)"
                    print(f"{elapsed}  done  {key}{detail}", file=out, flush=True)
            elif event.is_step_failure:
                print(f"{elapsed}  FAILED {event.step_key}: {event.step_failure_data.error.message.strip()}",
                      file=out, flush=True)
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                check = event.event_specific_data
                if not check.passed:
                    print(f"{elapsed}  check {check.severity.value.lower()}: "
                          f"{check.asset_key.to_user_string()}:{check.check_name}", file=out, flush=True)

    def own_logger(name: str, handler: logging.Handler) -> logging.Logger:
        """A logger with only `handler`: a rerun must not add a second one, nor echo to the root."""
        logger = logging.getLogger(name)
        for old in logger.handlers:
            old.close()  # a rerun's file handler would otherwise leave its log file open
        logger.handlers.clear()
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        return logger

    @dg.logger(description="Every Dagster event of the run, to a file")
    def demo_file(_init_context) -> logging.Logger:
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        return own_logger("clv_platform.demo.file", handler)

    @dg.logger(description="One console line per materialized asset and failure")
    def demo_progress(_init_context) -> logging.Logger:
        return own_logger("clv_platform.demo.progress", Progress())

    return {"demo_file": demo_file, "demo_progress": demo_progress}


def _runs_with_ui_origin(instance, job_name: str) -> None:
    """Make the instance record the demo run as a run of the UI's code location.

    `execute_in_process` records a run without a code location, and the UI's Overview timeline
    only draws runs of a loaded location (the run was under Runs only). The origin names the
    location of `workspace.yaml` (`clv_platform`, module `clv_platform.definitions`), so the demo
    run appears on the timeline beside scheduled runs. Uses Dagster's internal origin classes
    (pinned to 1.13): if they move, the run is still recorded, only without the origin.
    """
    try:
        from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
        from dagster._core.remote_origin import (
            ManagedGrpcPythonEnvCodeLocationOrigin,
            RemoteJobOrigin,
            RemoteRepositoryOrigin,
        )
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    except ImportError:
        return
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable, module_name="clv_platform.definitions", working_directory=os.getcwd()
        ),
        location_name="clv_platform",
    )
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name=job_name
    )
    create_run_for_job = instance.create_run_for_job

    def with_origin(*args, **kwargs):
        kwargs.setdefault("remote_job_origin", origin)
        return create_run_for_job(*args, **kwargs)

    instance.create_run_for_job = with_origin


def _dagster_instance():
    """The Dagster instance of `DAGSTER_HOME` (its folder made first: Dagster refuses a missing one
    with a traceback, and a first run in a new data folder is the usual case), else an ephemeral one."""
    import dagster as dg

    from clv_platform.settings import env_value

    home = env_value("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    folder = Path(home).expanduser()
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise SystemExit(f"DAGSTER_HOME={home} is not a folder and cannot be made one ({exc}): "
                             "point it at a folder for Dagster's run history") from None
        print(f"created DAGSTER_HOME {folder} (Dagster's run history)", file=sys.stderr)
    return dg.DagsterInstance.get()


def run_demo(args: argparse.Namespace) -> int:
    """Materialize the whole graph on the demo store, in this process, into the DuckDB file."""
    from clv_platform.settings import env_value, force_environment

    if (env_value("CLV_SOURCE") or "demo") != "demo":
        print(f"note: CLV_SOURCE={env_value('CLV_SOURCE')} is set; `demo` uses the demo store (CLV_SOURCE=demo)",
              file=sys.stderr)
    force_environment(CLV_SOURCE="demo", CLV_DEMO_CUSTOMERS=env_value("CLV_DEMO_CUSTOMERS") or str(args.customers))
    for var in ("SHOPIFY_ACCESS_TOKEN", "KLAVIYO_API_KEY"):
        if env_value(var):
            print(f"note: {var} is set; `demo` ignores it and uses the built-in demo store", file=sys.stderr)
            force_environment(**{var: None})

    import dagster as dg

    from clv_platform.definitions import build_definitions
    from clv_platform.ingestion.assets import shopify_daily_partitions
    from clv_platform.resources.storage import data_dir, duckdb_path

    database = Path(args.database).resolve() if args.database else duckdb_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(database=str(database))
    log_dir = data_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"demo_{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    loggers = demo_loggers(log_path)
    job = defs.resolve_job_def("refresh_everything").with_logger_defs(loggers)
    keys = shopify_daily_partitions.get_partition_keys()
    instance = _dagster_instance()
    if instance.is_persistent:
        _runs_with_ui_origin(instance, job.name)

    print(f"materializing the demo store into {database}; full Dagster log: {log_path}", flush=True)
    started = time.perf_counter()
    result = job.execute_in_process(
        run_config={"loggers": {name: {} for name in loggers}},
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
        print(f"full log: {log_path}", file=sys.stderr)
        return 1
    print(f"demo store materialized into {database} ({len(keys)} daily partitions)")
    return _report(result, database, elapsed, log_path)


def _print_failures(result) -> None:
    """One line per failed step: the step and the error that made it fail (the innermost cause, not
    dagster's "Error occurred while executing op" wrapper). The run's own RUN_FAILURE event carries
    no step data and adds nothing."""
    for event in result.all_events:
        if not event.is_step_failure or event.step_failure_data is None:
            continue
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            detail = data.user_failure_data.description
        else:
            error = data.error
            while error is not None and error.cause is not None:
                error = error.cause
            detail = error.message.strip() if error is not None else "unknown error"
        print(f"FAILED {event.step_key}: {detail}", file=sys.stderr)


def _report(result, database: Path, elapsed: float, log_path: Path | None = None) -> int:
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
    print(f"run time: {elapsed:.1f} s" + (f"; full Dagster log: {log_path}" if log_path else ""))
    return 0


def run_files(args: argparse.Namespace) -> int:
    """A files-only store: import every export in the inbox, then build the whole graph from staging.

    Trains and registers the models when the store has none yet (or with --retrain), otherwise
    scores with the registered ones. Each file is one partition of raw/file_transactions; a file
    already imported is imported again (its rows replaced), so the command is idempotent.
    """
    from clv_platform.settings import env_value, force_environment

    if (env_value("CLV_SOURCE") or "files") != "files":
        print(f"CLV_SOURCE={env_value('CLV_SOURCE')} is set; `files` runs a files-only store: "
              "unset it or set CLV_SOURCE=files", file=sys.stderr)
        return 2
    force_environment(CLV_SOURCE="files")

    import dagster as dg

    from clv_platform.automation.sensors import needs_training
    from clv_platform.definitions import build_definitions
    from clv_platform.ingestion.file_assets import inbox_file_partitions
    from clv_platform.ingestion.file_import import SUPPORTED_SUFFIXES, inbox_listing
    from clv_platform.settings import load_settings

    settings = load_settings()
    database = Path(args.database).resolve() if args.database else settings.duckdb_path
    database.parent.mkdir(parents=True, exist_ok=True)
    inbox = settings.inbox_dir
    importable, others = inbox_listing(inbox)
    files = [p.name for p in importable]
    for other in others:
        print(f"not imported: {other.name} (not a supported type: {', '.join(SUPPORTED_SUFFIXES)}; save it as CSV)",
              file=sys.stderr)
    if not files and not database.exists():
        print(f"no exports in {inbox} ({', '.join(SUPPORTED_SUFFIXES)}): put your file there first", file=sys.stderr)
        return 2
    defs = build_definitions(database=str(database))
    instance = _dagster_instance()
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

    from clv_platform.core.sql import transaction
    from clv_platform.ingestion.store_source import ensure_meta_table
    from clv_platform.settings import load_settings

    database = Path(args.database).resolve() if args.database else load_settings().duckdb_path
    with duckdb.connect(str(database)) as conn:
        ensure_meta_table(conn)
        conn.execute(
            "create table if not exists meta.withdrawn_files (file_name varchar, rows bigint, withdrawn_at timestamp)"
        )
        with transaction(conn):
            rows = conn.execute("select count(*) from raw.file_transactions where file_name = ?", [args.file]).fetchone()[0]
            if rows:
                conn.execute("delete from raw.file_transactions where file_name = ?", [args.file])
                conn.execute("insert into meta.withdrawn_files values (?, ?, now()::timestamp)", [args.file, rows])
        if rows == 0:
            print(f"{args.file}: no rows of this file in {database}", file=sys.stderr)
            return 1
    print(f"{args.file}: {rows} raw rows withdrawn from {database}; rebuild staging to drop its orders "
          "(clv-platform files, or the rebuild_from_staging job)")
    return 0


def _bench_moved(args: argparse.Namespace | None = None) -> int:
    print("the benchmark is not part of the installed package any more: from the repository root run\n"
          "  make bench ARGS=\"--customers 100000 --mode nightly\"\n"
          "or  .venv/bin/python -m benchmarks.bench --customers 100000 --mode nightly", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    if (argv if argv is not None else sys.argv[1:])[:1] == ["bench"]:
        return _bench_moved()
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

    from clv_platform import backtest_cli

    backtest = sub.add_parser("backtest", help="backtest BTYD, XGBoost and hybrid CLV (and next purchase) models")
    backtest_cli.add_arguments(backtest)
    backtest.set_defaults(func=backtest_cli.run)

    # the benchmark lives outside the installed package (benchmarks/); say where it went
    bench_parser = sub.add_parser("bench", help="moved: run `make bench ARGS=\"--customers N\"` from the repository")
    bench_parser.set_defaults(func=_bench_moved)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
