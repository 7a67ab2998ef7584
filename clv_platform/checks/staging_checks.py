"""Asset checks of the raw and staging layers.

Raw keeps records exactly as received, so its checks only warn (staging rejects bad records with
a reason). Staging is what every feature and model reads: its checks are blocking, so a rebuild
with duplicate orders, lost rows, future dates or negative revenue stops before the features.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from clv_platform.checks.common import (
    count,
    count_or_zero,
    future_limit,
    missing_table,
    result,
    rows_where_check,
    sample_ids,
)
from clv_platform.resources.storage import table_exists
from clv_platform.ingestion.assets import RAW_KLAVIYO_PROFILES, RAW_SHOPIFY_ORDERS
from clv_platform.transforms.order_history import StaleOrderHistory, check_order_history
from clv_platform.transforms.staging_assets import CUSTOMERS, ORDER_HISTORY, ORDER_LINES, ORDERS, REJECTED_ROWS

RAW_ORDERS = RAW_SHOPIFY_ORDERS
RAW_PROFILES = RAW_KLAVIYO_PROFILES
REJECTED = REJECTED_ROWS


# ----------------------------------------------------------------------------- raw (warnings)


raw_orders_have_ids = rows_where_check(
    RAW_ORDERS, "raw.shopify_orders", "order_id is null or updated_at is null",
    name="raw_orders_have_ids", description="Every fetched order version has an id and an updatedAt.",
    found="{} order versions without id or updatedAt (staging rejects them)", none="all ids present",
    metadata_key="rows_without_id",
)
raw_orders_no_future_updates = rows_where_check(
    RAW_ORDERS, "raw.shopify_orders", "updated_at > ?", params=lambda: [future_limit()],
    name="raw_orders_no_future_updates", description="No order version is updated in the future.",
    found="{} order versions dated in the future", none="no future timestamps", metadata_key="future_rows",
)
raw_profiles_no_future_updates = rows_where_check(
    RAW_PROFILES, "raw.klaviyo_profiles", "updated_at > ?", params=lambda: [future_limit()],
    name="raw_profiles_no_future_updates", description="No Klaviyo profile is updated in the future.",
    found="{} profile versions dated in the future", none="no future timestamps", metadata_key="future_rows",
)


# ----------------------------------------------------------------------------- staging (blocking)


@dg.asset_check(asset=ORDERS, blocking=True, description="order_id is unique in staging.orders.")
def orders_unique_order_id(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.orders"):
            return missing_table("staging.orders")
        dupes_sql = "select order_id from staging.orders group by order_id having count(*) > 1"
        dupes = count(conn, f"select count(*) from ({dupes_sql})")
        examples = sample_ids(conn, dupes_sql) if dupes else []
    return result(
        dupes == 0,
        "order_id is unique",
        f"{dupes} order ids appear more than once, e.g. {', '.join(examples)}",
        duplicate_order_ids=dupes,
        examples=", ".join(examples),
    )


@dg.asset_check(
    asset=ORDERS, blocking=True, description="order_id, order_date and created_at are never null."
)
def orders_keys_not_null(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.orders"):
            return missing_table("staging.orders")
        nulls = {
            column: count(conn, f"select count(*) from staging.orders where {column} is null")
            for column in ("order_id", "order_date", "created_at")
        }
    bad = {c: n for c, n in nulls.items() if n}
    return result(not bad, "no null keys", f"null keys in staging.orders: {bad}", **{f"null_{c}": n for c, n in nulls.items()})


@dg.asset_check(
    asset=ORDERS,
    blocking=True,
    description="No order is created, updated, dated or cancelled in the future (beyond the configured tolerance).",
)
def orders_no_future_timestamps(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    limit = future_limit()
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.orders"):
            return missing_table("staging.orders")
        counts = {
            column: count(conn, f"select count(*) from staging.orders where cast({column} as timestamp) > ?", [limit])
            for column in ("created_at", "updated_at", "order_date", "cancelled_at")
        }
        examples = sample_ids(
            conn,
            "select order_id from staging.orders where created_at > ? or updated_at > ? "
            "or cast(order_date as timestamp) > ? or cancelled_at > ?",
            [limit] * 4,
        )
    bad = {c: n for c, n in counts.items() if n}
    return result(
        not bad,
        f"no timestamps after {limit:%Y-%m-%d %H:%M} UTC",
        f"future timestamps in staging.orders: {bad}, e.g. {', '.join(examples)}",
        **{f"future_{c}": n for c, n in counts.items()},
        limit=str(limit),
    )


@dg.asset_check(asset=ORDERS, blocking=True, description="net_revenue is never negative or null.")
def orders_net_revenue_non_negative(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.orders"):
            return missing_table("staging.orders")
        bad_sql = "select order_id from staging.orders where net_revenue < 0 or net_revenue is null"
        bad = count(conn, f"select count(*) from ({bad_sql})")
        examples = sample_ids(conn, bad_sql) if bad else []
    return result(
        bad == 0,
        "net_revenue >= 0 everywhere",
        f"{bad} orders with negative or null net_revenue, e.g. {', '.join(examples)}",
        bad_orders=bad,
    )


@dg.asset_check(asset=ORDER_LINES, blocking=True, description="(order_id, line_number) is present and unique.")
def order_lines_keys(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.order_lines"):
            return missing_table("staging.order_lines")
        nulls = count(conn, "select count(*) from staging.order_lines where order_id is null or line_number is null")
        dupes = count(
            conn,
            "select count(*) from (select order_id, line_number from staging.order_lines "
            "group by all having count(*) > 1)",
        )
    return result(
        nulls == 0 and dupes == 0,
        "line keys present and unique",
        f"{nulls} lines with a null key, {dupes} duplicated (order_id, line_number)",
        null_keys=nulls,
        duplicate_keys=dupes,
    )


@dg.asset_check(asset=CUSTOMERS, blocking=True, description="customer_id is present and unique.")
def customers_unique_id(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        if not table_exists(conn, "staging.customers"):
            return missing_table("staging.customers")
        nulls = count(conn, "select count(*) from staging.customers where customer_id is null")
        dupes_sql = "select customer_id from staging.customers group by customer_id having count(*) > 1"
        dupes = count(conn, f"select count(*) from ({dupes_sql})")
        examples = sample_ids(conn, dupes_sql) if dupes else []
    return result(
        nulls == 0 and dupes == 0,
        "one row per customer",
        f"{nulls} null customer ids, {dupes} duplicated, e.g. {', '.join(examples)}",
        null_customer_ids=nulls,
        duplicate_customer_ids=dupes,
    )


def reconciliation_counts(conn) -> list[dict]:
    """Rows in vs accepted + rejected per raw table, from the persisted staging tables only.

    Shopify: every raw order version is a staging order (non-file source) or a rejected row.
    Files: every raw row is an order line of an imported order, a return line, or rejected.
    Klaviyo profiles are left to the staging build's own reconciliation (it raises when they do
    not balance): accepted profiles sharing an email merge into one customer, so their count
    cannot be recovered from staging.customers.
    """
    rows = []
    for source_table, accepted in (
        ("raw.shopify_orders", count_or_zero(conn, "staging.orders", "source <> 'file'")),
        (
            "raw.file_transactions",
            count_or_zero(conn, "staging.order_lines", "order_id like 'import:%'")
            + count_or_zero(conn, "staging.returns"),
        ),
    ):
        rejected = count_or_zero(conn, "staging.rejected_rows", f"source_table = '{source_table}'")
        rows_in = count_or_zero(conn, source_table)
        rows.append({"source_table": source_table, "rows_in": rows_in, "accepted": accepted, "rejected": rejected})
    return rows


@dg.asset_check(
    asset=REJECTED,
    blocking=True,
    description="For every raw table: rows in = rows accepted into staging + rows rejected with a reason.",
)
def staging_rows_reconcile(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        rows = reconciliation_counts(conn)
    unbalanced = [r for r in rows if r["rows_in"] != r["accepted"] + r["rejected"]]
    table = "\n".join(
        ["| raw table | rows in | accepted | rejected |", "|---|---|---|---|"]
        + [f"| {r['source_table']} | {r['rows_in']} | {r['accepted']} | {r['rejected']} |" for r in rows]
    )
    return result(
        not unbalanced,
        "every raw row is accepted or rejected",
        "rows do not reconcile: "
        + "; ".join(
            f"{r['source_table']}: {r['rows_in']} in != {r['accepted']} accepted + {r['rejected']} rejected"
            for r in unbalanced
        ),
        reconciliation=dg.MetadataValue.md(table),
    )


@dg.asset_check(
    asset=ORDER_HISTORY,
    blocking=True,
    description="One history row per order with a customer, and each customer's purchases numbered 1..n.",
)
def order_history_matches_orders(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        try:
            check_order_history(conn)
        except StaleOrderHistory as exc:
            return dg.AssetCheckResult(passed=False, description=str(exc))
        # a gap or a repeat in purchase_seq would shift every cadence feature of that customer
        broken = """
            select customer_id
            from staging.order_history
            where purchase_seq is not null
            group by customer_id
            having max(purchase_seq) <> count(*) or count(distinct purchase_seq) <> count(*)
        """
        bad = count(conn, f"select count(*) from ({broken})")
        examples = sample_ids(conn, broken)
    return result(not bad, "history matches staging.orders", f"{bad} customers with a broken purchase sequence, "
                  f"e.g. {', '.join(examples)}", broken_customers=bad)


STAGING_CHECKS = [
    raw_orders_have_ids,
    raw_orders_no_future_updates,
    raw_profiles_no_future_updates,
    orders_unique_order_id,
    orders_keys_not_null,
    orders_no_future_timestamps,
    orders_net_revenue_non_negative,
    order_lines_keys,
    customers_unique_id,
    staging_rows_reconcile,
    order_history_matches_orders,
]
