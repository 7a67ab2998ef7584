"""DDL of the raw layer, shared by every ingestion path and by staging."""

from __future__ import annotations

import duckdb

from clv_platform.resources.storage import read_sql, run_script


def ensure_raw_tables(conn: duckdb.DuckDBPyConnection) -> None:
    run_script(conn, read_sql("clv_platform.ingestion", "sql/raw_tables.sql"))
