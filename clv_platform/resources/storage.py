"""Where the platform keeps its files, and the small DuckDB helpers every layer shares.

Paths come from the settings object (`clv_platform/settings.py`, which reads `CLV_DATA_DIR`,
`CLV_DUCKDB_PATH`, ...) so a test, the Makefile and a deployment can each point the same code
at their own files. `StorageResource` is the DuckDB resource of the graph: it also carries the
settings, so an asset gets them from the resource it already has (`settings_of(duckdb)`).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform.settings import DEFAULT_MEMORY_LIMIT, Settings, load_settings, settings_from_fields, with_database

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def data_dir() -> Path:
    return load_settings().data_dir


def duckdb_path() -> Path:
    return load_settings().duckdb_path


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

    @classmethod
    def from_settings(cls, settings: Settings) -> "StorageResource":
        from clv_platform.settings import settings_fields

        fields = settings_fields(settings)
        return cls(
            database=fields["duckdb_path"],
            connection_config={"memory_limit": settings.memory_limit, "preserve_insertion_order": False},
            **fields,
        )

    def settings(self) -> Settings:
        names = Settings.__dataclass_fields__
        return settings_from_fields({name: getattr(self, name) for name in names} | {"duckdb_path": self.database})


def settings_of(resource: DuckDBResource | None = None) -> Settings:
    """The settings of the store behind `resource`.

    A plain `DuckDBResource` (tests that build their own) gets the settings of the environment,
    pointed at that resource's file.
    """
    if isinstance(resource, StorageResource):
        return resource.settings()
    settings = load_settings()
    return with_database(settings, resource.database) if resource is not None else settings


def reports_dir() -> Path:
    """HTML reports (explainability, drift, backtest): `CLV_REPORTS_DIR`, else `<data dir>/reports`."""
    return settings_of().reports_dir


def reports_url() -> str:
    """Where `make ui` serves `reports_dir()` read-only (`CLV_REPORTS_URL`); asset links point there."""
    return settings_of().reports_url


def report_retention() -> int:
    """Newest reports kept per kind (`CLV_REPORT_RETENTION`, default 5, at least 1)."""
    return settings_of().report_retention


def read_sql(package: str, name: str) -> str:
    """Read a .sql file shipped inside the package (works from an installed wheel too)."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def split_statements(sql: str) -> list[str]:
    """Split a SQL script on statement-ending semicolons (our files keep `;` at line ends)."""
    parts = re.split(r";\s*(?:\n|$)", sql)
    return [p.strip() for p in parts if p.strip() and not _only_comments(p)]


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def run_script(conn: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> None:
    """Execute each statement of a script, passing only the parameters it uses."""
    for statement in split_statements(sql):
        used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
        conn.execute(statement, used) if used else conn.execute(statement)


def qualified(table: str) -> str:
    """Validate a `schema.table` name before it is interpolated into SQL."""
    parts = table.split(".")
    if len(parts) != 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Replace `schema.table` with the frame's rows: re-running an asset never duplicates."""
    name = qualified(table)
    conn.execute(f"create schema if not exists {name.split('.')[0]}")
    conn.register("_frame_to_write", frame)
    try:
        conn.execute(f"create or replace table {name} as select * from _frame_to_write")
    finally:
        conn.unregister("_frame_to_write")
    return len(frame)


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = qualified(table).split(".")
    return bool(
        conn.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(conn.execute(f"select count(*) from {qualified(table)}").fetchone()[0])
