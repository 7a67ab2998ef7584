"""Where the platform keeps its files, and the DuckDB resource every asset receives.

Paths come from the settings object (`clv_platform/settings.py`, which reads `CLV_DATA_DIR`,
`CLV_DUCKDB_PATH`, ...) so a test, the Makefile and a deployment can each point the same code
at their own files. `StorageResource` is the DuckDB resource of the graph: it also carries the
settings, so an asset gets them from the resource it already has (`settings_of(duckdb)`).
"""

from __future__ import annotations

from pathlib import Path

from dagster_duckdb import DuckDBResource

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
    Settings,
    load_settings,
    settings_from_fields,
    with_database,
)


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
    batch_customers: int = DEFAULT_BATCH_CUSTOMERS
    refit_after_days: int = DEFAULT_REFIT_AFTER_DAYS

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
