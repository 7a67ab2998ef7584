"""Where the platform keeps its files, and the small DuckDB helpers every layer shares.

Paths come from environment variables (`CLV_DATA_DIR`, `CLV_DUCKDB_PATH`) so a test,
the Makefile and a deployment can each point the same code at their own files.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def data_dir() -> Path:
    return Path(os.environ.get("CLV_DATA_DIR", "data")).resolve()


def duckdb_path() -> Path:
    return Path(os.environ.get("CLV_DUCKDB_PATH", str(data_dir() / "clv.duckdb"))).resolve()


DEFAULT_MEMORY_LIMIT = "4GB"


def duckdb_config() -> dict[str, object]:
    """Settings of the platform's DuckDB connection.

    `memory_limit` (env `CLV_DUCKDB_MEMORY_LIMIT`, default 4 GB) caps DuckDB's buffer pool;
    beyond it joins, sorts and uncommitted tables spill to `<database>.tmp`. DuckDB's own
    default is 80 % of RAM, which leaves nothing for the pandas and XGBoost work of the same
    run; at 4 GB a million-customer refresh stays under 6 GiB in total (`clv-platform bench`).
    `preserve_insertion_order = false` lets large `create table as` statements stream
    without buffering to keep row order; every query that needs an order says `order by`.
    """
    return {
        "memory_limit": os.environ.get("CLV_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
        "preserve_insertion_order": False,
    }


def inbox_dir() -> Path:
    return Path(os.environ.get("CLV_INBOX_DIR", str(data_dir() / "inbox"))).resolve()


def reports_dir() -> Path:
    """HTML reports (explainability, drift, backtest): `CLV_REPORTS_DIR`, else `<data dir>/reports`."""
    return Path(os.environ.get("CLV_REPORTS_DIR", str(data_dir() / "reports"))).resolve()


DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"
DEFAULT_REPORT_RETENTION = 5


def reports_url() -> str:
    """Where `make ui` serves `reports_dir()` read-only (`CLV_REPORTS_URL`); asset links point there."""
    return os.environ.get("CLV_REPORTS_URL", DEFAULT_REPORTS_URL).rstrip("/")


def report_retention() -> int:
    """Newest reports kept per kind (`CLV_REPORT_RETENTION`, default 5; each drift report is ~5 MB)."""
    value = int(os.environ.get("CLV_REPORT_RETENTION", str(DEFAULT_REPORT_RETENTION)))
    if value < 1:
        raise ValueError(f"CLV_REPORT_RETENTION must be at least 1 (the report just written), got {value}")
    return value


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
