"""raw → staging: parse, validate, de-duplicate and resolve customers, all in DuckDB SQL.

The whole staging layer is rebuilt from the raw tables inside one transaction (intermediate
tables live in a `staging_build` schema, dropped after the commit). That
makes it idempotent (a rerun replaces every table), keeps the tables consistent with
each other, and lets us prove that every raw record is either accepted or rejected
with a reason.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import duckdb

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.resources.storage import read_sql, run_script

STAGING_SCRIPTS = (
    "01_order_versions.sql",
    "02_profile_versions.sql",
    "03_file_rows.sql",
    "04_identity.sql",
    "05_staging_tables.sql",
    "06_order_history.sql",
)

STAGING_TABLES = (
    "orders", "order_lines", "customers", "products", "refunds", "returns", "rejected_rows", "order_history",
)

BUILD_SCHEMA = "staging_build"
"""Intermediate tables of one build. They are ordinary tables, not temp tables, because
DuckDB writes a large uncommitted table of a file database to disk as it fills, while an
uncommitted temp table must stay in memory: with temp tables the build needed > 4 GB at a
million customers. The schema is rebuilt by every build and dropped right after it."""

BUILD_VIEWS = ("_profile_versions_judged", "_accepted_orders", "_accepted_profiles")

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Reconciliation:
    """Rows in vs rows accepted + rejected for one raw table."""

    source_table: str
    rows_in: int
    accepted: int
    rejected: int

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.rejected


@dataclass
class StagingResult:
    shop_currency: str
    row_counts: dict[str, int] = field(default_factory=dict)
    reconciliation: list[Reconciliation] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    script_seconds: dict[str, float] = field(default_factory=dict)


def infer_shop_currency(conn: duckdb.DuckDBPyConnection, default: str = "USD") -> str:
    """The shop currency is whatever `shopMoney` is most often in, else the most frequent currency
    of the imported file rows (column or store setting, recorded per row); fall back to `default`."""
    value = conn.execute(
        """
        select coalesce(
            (select mode(json_extract_string(payload, '$.totalPriceSet.shopMoney.currencyCode'))
             from raw.shopify_orders),
            (select mode(nullif(upper(trim(currency)), '')) from raw.file_transactions)
        )
        """
    ).fetchone()[0]
    return value or default


def build_staging(
    conn: duckdb.DuckDBPyConnection, shop_currency: str | None = None, store_timezone: str = "UTC"
) -> StagingResult:
    """Rebuild every staging table from raw in one transaction and reconcile the counts.

    Raises if any raw table does not balance: silently losing rows is worse than failing.
    """
    ensure_raw_tables(conn)
    currency = shop_currency or infer_shop_currency(conn)
    if not _CURRENCY.match(currency):
        raise ValueError(f"shop currency must be a 3-letter ISO code, got {currency!r}")
    conn.execute("begin transaction")
    try:
        conn.execute(f"create schema if not exists {BUILD_SCHEMA}")
        result = StagingResult(shop_currency=currency)
        for script in STAGING_SCRIPTS:
            started = time.perf_counter()
            run_script(conn, read_sql("clv_platform.transforms", f"sql/staging/{script}"),
                       {"shop_currency": currency, "store_timezone": store_timezone})
            result.script_seconds[script] = time.perf_counter() - started
        result.reconciliation = reconcile(conn)
        unbalanced = [r for r in result.reconciliation if not r.balanced]
        if unbalanced:
            raise RuntimeError(f"staging lost rows: {unbalanced}")
        conn.execute("commit")
    except Exception:
        try:
            conn.execute("rollback")
        except duckdb.TransactionException:
            pass  # the failed statement was the commit itself: nothing is left to roll back
        raise
    finally:
        _drop_build_objects(conn)
    result.row_counts = {
        t: int(conn.execute(f"select count(*) from staging.{t}").fetchone()[0]) for t in STAGING_TABLES
    }
    result.reject_reasons = dict(
        conn.execute(
            "select reason, count(*) from staging.rejected_rows group by reason order by 2 desc"
        ).fetchall()
    )
    return result


def _drop_build_objects(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop the intermediates after the commit (DuckDB cannot commit a transaction that both
    created and dropped a table it wrote optimistically to disk)."""
    for view in BUILD_VIEWS:
        conn.execute(f"drop view if exists {view}")
    conn.execute(f"drop schema if exists {BUILD_SCHEMA} cascade")


def reconcile(conn: duckdb.DuckDBPyConnection) -> list[Reconciliation]:
    """Count, per raw table, records in vs accepted vs rejected (reads the temp tables of a build)."""
    rows = conn.execute(
        """
        select 'raw.shopify_orders',
               (select count(*) from raw.shopify_orders),
               (select count(*) from staging.orders where source <> 'file'),
               (select count(*) from staging.rejected_rows where source_table = 'raw.shopify_orders')
        union all
        select 'raw.klaviyo_profiles',
               (select count(*) from raw.klaviyo_profiles),
               (select count(*) from _accepted_profiles),
               (select count(*) from staging.rejected_rows where source_table = 'raw.klaviyo_profiles')
        union all
        select 'raw.file_transactions',
               (select count(*) from raw.file_transactions),
               (select count(*) from staging_build._file_rows where reject_reason is null),
               (select count(*) from staging.rejected_rows where source_table = 'raw.file_transactions')
        """
    ).fetchall()
    return [Reconciliation(t, int(i), int(a), int(r)) for t, i, a, r in rows]
