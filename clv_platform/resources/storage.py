"""Where the platform keeps its files, and the DuckDB resource every asset receives.

Paths come from the settings object (`clv_platform/settings.py`, which reads `CLV_DATA_DIR`,
`CLV_DUCKDB_PATH`, ...) so a test, the Makefile and a deployment can each point the same code
at their own files. `StorageResource` is the DuckDB resource of the graph: it also carries the
settings, so an asset gets them from the resource it already has (`settings_of(duckdb)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from clv_platform.core import warmup
from clv_platform.core.sql import (  # noqa: F401 (re-exported: the SQL helpers every layer uses)
    qualified,
    read_sql,
    replace_table,
    row_count,
    run_script,
    split_statements,
    table_exists,
    transaction,
)
from clv_platform.reports import report_retention, reports_dir, reports_url  # noqa: F401 (re-exported)
from clv_platform.settings import (
    DEFAULT_BATCH_CUSTOMERS,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_REFIT_AFTER_DAYS,
    EXPORT_FORMATS,
    Settings,
    load_settings,
    settings_from_fields,
    store_mismatch_message,
    with_database,
)


def data_dir() -> Path:
    return load_settings().data_dir


def duckdb_path() -> Path:
    return load_settings().duckdb_path


SPOOL_MEMORY_LIMIT = "512MB"
"""Buffer pool of a scratch DuckDB file that only takes appends (fetched orders, an export's rows)."""


def spool_connection(path: Path) -> duckdb.DuckDBPyConnection:
    """A scratch DuckDB file at ``path`` that only takes appends (a load's fetched orders, an export's
    rows, waiting for one transaction to move them into the store): the platform's settings with a
    ``SPOOL_MEMORY_LIMIT`` buffer pool, spilling beside the file."""
    return duckdb.connect(str(path), config={**duckdb_config(), "memory_limit": SPOOL_MEMORY_LIMIT,
                                             "temp_directory": str(path.parent)})


@contextmanager
def attached_read_only(conn: duckdb.DuckDBPyConnection, path: Path, alias: str) -> Iterator[str]:
    """``path`` attached to ``conn`` read-only as ``alias`` for the block (a spool the store reads
    from), detached after it, also on an error."""
    quoted = str(path).replace("'", "''")
    conn.execute(f"attach '{quoted}' as {alias} (read_only)")
    try:
        yield alias
    finally:
        conn.execute(f"detach database if exists {alias}")


def duckdb_config() -> dict[str, object]:
    """Settings of the platform's DuckDB connection.

    `memory_limit` (env `CLV_DUCKDB_MEMORY_LIMIT`, default 4 GB) caps DuckDB's buffer pool;
    beyond it joins, sorts and uncommitted tables spill to `<database>.tmp`. DuckDB's own
    default is 80 % of RAM, which leaves nothing for the pandas and XGBoost work of the same
    run; at 4 GB a million-customer refresh stays under 6 GiB in total (`make bench`).
    `preserve_insertion_order = false` lets large `create table as` statements stream
    without buffering to keep row order; every query that needs an order says `order by`.
    """
    return {
        "memory_limit": load_settings().memory_limit,
        "preserve_insertion_order": False,
    }


def inbox_dir() -> Path:
    return load_settings().inbox_dir


class StorageResource(DuckDBResource):
    """The platform's DuckDB file plus the settings of the store it holds (see `settings.py`).

    Built once in `definitions.py`; assets keep asking for `duckdb: DuckDBResource` and read the
    settings with `settings_of(duckdb)`.
    """

    source: str = "demo"
    data_dir: str = "data"
    duckdb_path: str = ""
    inbox_dir: str = "data/inbox"
    export_dir: str = "data/exports"
    analytics_path: str = "data/analytics.duckdb"
    models_dir: str = "data/models"
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    as_of: str | None = None
    store_timezone: str = "UTC"
    file_currency: str | None = None
    orders_start_date: str = "2024-11-01"
    demo_customers: int = 5000
    demo_seed: int = 42
    shopify_api_version: str = "2026-10"
    has_shopify_credentials: bool = False
    shopify_uses_client_credentials: bool = False
    has_klaviyo_key: bool = False
    reports_dir: str = "data/reports"
    reports_url: str = "http://127.0.0.1:3001"
    report_retention: int = 5
    batch_customers: int = DEFAULT_BATCH_CUSTOMERS
    refit_after_days: int = DEFAULT_REFIT_AFTER_DAYS
    file_columns: dict[str, str] = {}
    file_sheets: list[str] = []
    file_date_order: str = "auto"
    export_formats: list[str] = list(EXPORT_FORMATS)
    export_keep_dates: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "StorageResource":
        from clv_platform.settings import settings_fields

        fields = settings_fields(settings)
        return cls(
            database=fields["duckdb_path"],
            connection_config={"memory_limit": settings.memory_limit, "preserve_insertion_order": False},
            **fields,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Once per run (the platform's in-process executor): start the background warm-ups of
        the libraries the run's later steps need (`core.warmup`)."""
        started = warmup.start_for_run(_run_step_keys(context))
        if started and context.log is not None:
            context.log.debug(f"loading {', '.join(started)} in the background for later steps")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """DuckDB's connection; a step that reads a table its upstream asset never wrote fails with a
        sentence naming that asset (`missing_upstream_failure`) instead of DuckDB's CatalogException.
        A database that holds another store than `source` is refused (`refuse_another_store`), and one
        another process keeps locked is a sentence too (`locked_database_failure`).
        Closed on an error too (`DuckDBResource` closes it only after a clean block): a later connection
        of the same process with another configuration is refused while it stays open."""
        try:
            # DuckDBResource retries a locked file for about 100 s before it gives up
            conn = super().get_connection().__enter__()
        except duckdb.IOException as error:
            failure = locked_database_failure(error, self.database)
            if failure is None:
                raise
            raise failure from error
        try:
            self.refuse_another_store(conn)
            yield conn
        except duckdb.CatalogException as error:
            failure = missing_upstream_failure(conn, error, self.database)
            if failure is None:
                raise
            raise failure from error
        finally:
            conn.close()

    def refuse_another_store(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Fail (not retryable) when `meta.platform` records another store than `source`: in every
        step, not only the raw and staging ones (which also record the store on first use), so a
        retrain, a scoring or one asset launched with another `CLV_SOURCE` never writes its models,
        scores or exports beside another store's data."""
        if not table_exists(conn, "meta.platform"):  # recorded by the first raw or staging step
            return
        held = conn.execute("select source from meta.platform limit 1").fetchone()
        if held and held[0] != self.source:
            raise dg.Failure(description=store_mismatch_message(self.database, held[0], self.source),
                             allow_retries=False)

    def settings(self) -> Settings:
        names = Settings.__dataclass_fields__
        return settings_from_fields({name: getattr(self, name) for name in names} | {"duckdb_path": self.database})


# DuckDB's words for a file another process holds (`Could not set lock on file "...": Conflicting lock
# is held in /usr/bin/python3.11 (PID 4242)`).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def locked_database_failure(error: duckdb.IOException, database: str) -> dg.Failure | None:
    """A `dg.Failure` saying who holds `database` and what to do, when `error` is DuckDB refusing its
    write lock; None for any other I/O error. Retries stay allowed: the holder may finish."""
    if "Could not set lock on file" not in str(error):
        return None
    holder = _LOCK_HOLDER.search(str(error))
    who = f"process {holder.group(2)} ({Path(holder.group(1)).name})" if holder else "another process"
    return dg.Failure(
        description=f"{database} is in use by {who}: DuckDB lets one process write a database at a time. Runs "
        "launched from the UI, a schedule or a sensor wait for each other (the instance's run queue, "
        "dagster.yaml), but a run started on the command line (clv-platform demo / files, dagster asset "
        "materialize, dagster job execute) or a DuckDB shell holding the file does not: let it finish or close "
        "it, then run this again.",
        metadata={"locked_by_pid": int(holder.group(2))} if holder else None,
    )


# DuckDB's words for a table or schema that is not in the database (`Table with name "staging.orders"
# does not exist because ...`, `Table with name customer_scores does not exist!`, `Schema with name marts ...`).
_MISSING_NAME = re.compile(r'(Table|Schema) with name "?([A-Za-z0-9_.]+)"? does not exist')


def missing_upstream_failure(conn: duckdb.DuckDBPyConnection, error: duckdb.CatalogException,
                             database: str) -> dg.Failure | None:
    """A non-retryable `dg.Failure` when `error` is the running asset reading the table of another
    asset (key = `schema/table`) that was never materialized into `database`; None otherwise
    (outside an asset step, or a missing name that is no asset's table: a real error, re-raised)."""
    match = _MISSING_NAME.search(str(error))
    if match is None:
        return None
    try:
        context = dg.AssetExecutionContext.get()
        own = set(context.selected_asset_keys)
        # the assets of the job the run's selection was cut from (a named job also lists the assets
        # its selection reads), and those above this one, nearest first
        job = context.job_def
        while job.asset_selection_data is not None:
            job = job.asset_selection_data.parent_job_def
        graph = job.asset_layer.asset_graph
        known = {key for key in graph.get_all_asset_keys() if key not in own and len(key.path) == 2}
        direct = set(context.assets_def.dependency_keys) & known
        upstream = dg.AssetSelection.assets(*own).upstream().resolve(graph) & known
    except Exception:  # not inside an asset's step (a check, a sensor, a script): DuckDB's error stands
        return None
    kind, name = match.groups()
    if kind == "Schema":  # a missing schema misses every table in it: the nearest ones
        nearest = ([key for key in keys if key.path[0] == name] for keys in (direct, upstream))
    elif "." in name:  # an asset's table is what that asset writes
        nearest = ([key for key in known if ".".join(key.path) == name],)
    else:  # a bare table name: above this asset first (ml/ and marts/cluster_summary share one)
        nearest = ([key for key in keys if key.path[1] == name] for keys in (direct, upstream, known))
    candidates = next((keys for keys in nearest if keys), [])
    with conn.cursor() as cursor:  # its own transaction: the failed one may still be open
        missing = sorted(key.to_user_string() for key in candidates if not table_exists(cursor, ".".join(key.path)))
    if not missing:
        return None
    tables = ", ".join(key.replace("/", ".") for key in missing)
    keys = ", ".join(missing)
    current = ", ".join(sorted(key.to_user_string() for key in own))
    return dg.Failure(
        description=f"{current} reads {tables}, which {'is' if len(missing) == 1 else 'are'} not in {database} yet: "
        f"materialize {keys} first (or select {current} with everything upstream of it, e.g. the refresh_everything "
        "job), then run it again.",
        metadata={"missing_tables": tables, "materialize_first": keys},
        allow_retries=False,
    )


def _run_step_keys(context: dg.InitResourceContext) -> set[str] | None:
    """The step keys the run executes: its selected steps, else every step of its plan; None
    when neither is known (a resource built outside a run)."""
    run = context.run
    if run is None:
        return None
    if run.step_keys_to_execute is not None:
        return set(run.step_keys_to_execute)
    if context.instance is not None and run.execution_plan_snapshot_id:
        plan = context.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        return {step.key for step in plan.steps}
    return None


def settings_of(resource: DuckDBResource | None = None) -> Settings:
    """The settings of the store behind `resource`.

    A plain `DuckDBResource` (tests that build their own) gets the settings of the environment,
    pointed at that resource's file.
    """
    if isinstance(resource, StorageResource):
        return resource.settings()
    settings = load_settings()
    return with_database(settings, resource.database) if resource is not None else settings
