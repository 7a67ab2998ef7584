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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.resources.storage import read_sql, run_script

STAGING_SCRIPTS = (
    "00_value_limits.sql",
    "01_order_versions.sql",
    "02_profile_versions.sql",
    "03_file_rows.sql",
    "04_identity.sql",
    "05_staging_tables.sql",
    "06_order_history.sql",
    "07_acquisition.sql",
)

STAGING_TABLES = (
    "orders", "order_lines", "customers", "products", "refunds", "returns", "rejected_rows", "order_history",
    "customer_acquisition",
)

BUILD_SCHEMA = "staging_build"
"""Intermediate tables of one build. They are ordinary tables, not temp tables, because
DuckDB writes a large uncommitted table of a file database to disk as it fills, while an
uncommitted temp table must stay in memory: with temp tables the build needed > 4 GB at a
million customers. The schema is rebuilt by every build and dropped right after it."""

BUILD_VIEWS = ("_profile_versions_judged", "_accepted_orders", "_accepted_profiles")

_CURRENCY = re.compile(r"^[A-Z]{3}$")

REVENUE_BASES = ("net_sales", "total_price")
REVENUE_CONFIG = Path(__file__).with_name("revenue.toml")


def revenue_basis(path: Path | None = None) -> str:
    """The configured meaning of revenue (`revenue.toml` next to this module): net_sales or total_price."""
    value = tomllib.loads(Path(path or REVENUE_CONFIG).read_text(encoding="utf-8")).get("revenue_basis", "net_sales")
    if value not in REVENUE_BASES:
        raise ValueError(f"revenue_basis in {path or REVENUE_CONFIG} must be one of {REVENUE_BASES}, got {value!r}")
    return value


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
    shop_timezone: str = "UTC"
    revenue_basis: str = "net_sales"
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


def stored_shop(conn: duckdb.DuckDBPyConnection) -> tuple[str | None, str | None]:
    """(currency, IANA time zone) of the newest `raw.shopify_shop` row of the loaded source, if any."""
    row = conn.execute(
        """
        select currency_code, iana_timezone from raw.shopify_shop
        where source in (select source from raw.shopify_orders limit 1)
           or not exists (select 1 from raw.shopify_orders)
        order by fetched_at desc limit 1
        """
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def build_staging(
    conn: duckdb.DuckDBPyConnection,
    shop_currency: str | None = None,
    shop_timezone: str | None = None,
    basis: str | None = None,
    store_timezone: str | None = None,
) -> StagingResult:
    """Rebuild every staging table from raw in one transaction and reconcile the counts.

    The shop currency and time zone come from `raw.shopify_shop` (what Shopify said), else the
    currency is inferred from the orders and the time zone is the store setting
    (`store_timezone`, e.g. for a files-only store), else UTC. Order days of every source are
    calendar days in that time zone. Raises if any raw table
    does not balance: silently losing rows is worse than failing.
    """
    ensure_raw_tables(conn)
    stored_currency, stored_timezone = stored_shop(conn)
    currency = shop_currency or stored_currency or infer_shop_currency(conn)
    if not _CURRENCY.match(currency):
        raise ValueError(f"shop currency must be a 3-letter ISO code, got {currency!r}")
    timezone = shop_timezone or stored_timezone or store_timezone or "UTC"
    try:
        conn.execute("select timezone(?, timestamptz '2000-01-01 00:00:00+00')", [timezone])
    except duckdb.Error as exc:
        raise ValueError(f"shop time zone {timezone!r} is not an IANA time zone DuckDB knows: {exc}") from None
    basis = basis or revenue_basis()
    if basis not in REVENUE_BASES:
        raise ValueError(f"revenue basis must be one of {REVENUE_BASES}, got {basis!r}")
    conn.execute("begin transaction")
    try:
        conn.execute(f"create schema if not exists {BUILD_SCHEMA}")
        result = StagingResult(shop_currency=currency, shop_timezone=timezone, revenue_basis=basis)
        params = {"shop_currency": currency, "shop_timezone": timezone, "store_timezone": timezone,
                  "revenue_basis": basis}
        for script in STAGING_SCRIPTS:
            started = time.perf_counter()
            run_script(conn, read_sql("clv_platform.transforms", f"sql/staging/{script}"), params)
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
