"""Helpers the asset checks share: small SQL probes and the result factory.

Every check opens its own DuckDB connection, runs a few counting queries and returns an
`AssetCheckResult` whose description says what failed and whose metadata carries the counts
(and a few offending ids), so a failed blocking check explains itself in the UI.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb

from clv_platform.core.thresholds import monitoring_config
from clv_platform.resources.storage import qualified, table_exists


def columns_of(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, name = qualified(table).split(".")
    return [
        c
        for (c,) in conn.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
    ]


def count(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> int:
    return int(conn.execute(sql, params or []).fetchone()[0] or 0)


def count_or_zero(conn: duckdb.DuckDBPyConnection, table: str, where: str = "true") -> int:
    """Rows of `table` matching `where`; 0 when the table does not exist (a source never loaded)."""
    if not table_exists(conn, table):
        return 0
    return count(conn, f"select count(*) from {qualified(table)} where {where}")


def sample_ids(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None, limit: int = 5) -> list[str]:
    return [str(r[0]) for r in conn.execute(f"select * from ({sql}) limit {int(limit)}", params or []).fetchall()]


def utc_now_naive() -> datetime:
    """Now in UTC without tzinfo: the platform stores UTC as naive TIMESTAMP."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def future_limit(hours: float | None = None) -> datetime:
    tolerance = monitoring_config().checks.future_tolerance_hours if hours is None else hours
    return utc_now_naive() + timedelta(hours=tolerance)


def missing_table(table: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"table {table} does not exist")


def result(passed: bool, ok: str, failed: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=bool(passed), description=ok if passed else failed, metadata=metadata)
