"""Asset checks of the raw and staging layers.

Raw keeps records exactly as received, so its checks only warn (staging rejects bad records with
a reason). Staging is what every feature and model reads: its checks are blocking, so a rebuild
with duplicate orders, lost rows, future dates or negative revenue stops before the features;
`ADVISORY_CHECKS` only warn of what may be real (a customer with an implausible share of orders,
an order of an implausible amount, weeks without an order).
"""

from datetime import timedelta

import dagster as dg

from clv_platform.checks.common import (
    count,
    count_or_zero,
    future_limit,
    offenders,
    offending_ids_check,
    one_row_per_customer_check,
    repeated_ids,
    repeated_keys,
    result,
    rows_where_check,
    sample_ids,
    table_check,
)
from clv_platform.ingestion.assets import RAW_KLAVIYO_PROFILES, RAW_SHOPIFY_ORDERS
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.order_gaps import (CONTEXT_DAYS, MAX_EMPTY_PROBABILITY, MIN_GAP_DAYS, UNOBSERVED_NOTE,
                                                closed_season_note, order_stretches)
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


@table_check(ORDERS, "staging.orders", description="order_id is unique in staging.orders.")
def orders_unique_order_id(conn) -> dg.AssetCheckResult:
    # counted from the ids' hashes first, as the other key checks; the ids are grouped only for a failure's examples
    n, examples = repeated_ids(conn, "staging.orders", "order_id")
    examples = ", ".join(examples)
    return result(n == 0, "order_id is unique", f"{n} order ids appear more than once, e.g. {examples}",
                  duplicate_order_ids=n, examples=examples)


@table_check(ORDERS, "staging.orders", description="order_id, order_date and created_at are never null.")
def orders_keys_not_null(conn) -> dg.AssetCheckResult:
    nulls = {
        column: count(conn, f"select count(*) from staging.orders where {column} is null")
        for column in ("order_id", "order_date", "created_at")
    }
    bad = {c: n for c, n in nulls.items() if n}
    return result(not bad, "no null keys", f"null keys in staging.orders: {bad}", **{f"null_{c}": n for c, n in nulls.items()})


@table_check(
    ORDERS, "staging.orders",
    description="No order is created, updated, dated or cancelled in the future (beyond the configured tolerance).",
)
def orders_no_future_timestamps(conn) -> dg.AssetCheckResult:
    limit = future_limit()
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


orders_net_revenue_non_negative = offending_ids_check(
    ORDERS, "staging.orders", "select order_id from staging.orders where net_revenue < 0 or net_revenue is null",
    name="orders_net_revenue_non_negative", description="net_revenue is never negative or null.",
    ok="net_revenue >= 0 everywhere", failed="{n} orders with negative or null net_revenue, e.g. {examples}",
    metadata_key="bad_orders",
)


@table_check(ORDER_LINES, "staging.order_lines", description="(order_id, line_number) is present and unique.")
def order_lines_keys(conn) -> dg.AssetCheckResult:
    nulls = count(conn, "select count(*) from staging.order_lines where order_id is null or line_number is null")
    dupes = repeated_keys(conn, "staging.order_lines", "order_id, line_number")
    return result(
        nulls == 0 and dupes == 0,
        "line keys present and unique",
        f"{nulls} lines with a null key, {dupes} duplicated (order_id, line_number)",
        null_keys=nulls,
        duplicate_keys=dupes,
    )


ADVISORY_CHECKS = {"customers_hold_plausible_order_shares", "orders_have_plausible_amounts", "orders_cover_their_span"}
"""Staging checks that only warn: what they find may be real (see each), so it must not stop a run."""
PLAUSIBLE_SHARE = 0.01
PLAUSIBLE_MIN_ORDERS = 50
PLAUSIBLE_MEDIAN_MULTIPLE = 20


@table_check(
    ORDERS, "staging.orders", blocking=False, name="customers_hold_plausible_order_shares",
    description=f"No customer holds {PLAUSIBLE_SHARE:.0%} or more of the store's orders, at least "
    f"{PLAUSIBLE_MIN_ORDERS} and {PLAUSIBLE_MEDIAN_MULTIPLE}x the median customer's: such a customer is usually "
    "a placeholder for guests (WooCommerce's Customer ID 0) that makes every guest one customer.",
)
def customers_hold_plausible_order_shares(conn) -> dg.AssetCheckResult:
    """Warns, never blocks: a wholesale account can hold that many orders, and an id like 0 is a
    real customer in a 0-based numbering, so the text of an id alone cannot decide (the import
    rejects only ids that say there is none, `clv_file_missing_id`). The median multiple keeps a
    store of few, all frequent customers (a B2B shop) from warning of every one of them."""
    # one pass over the orders (the check runs after every nightly merge): the per-customer counts
    # give the total, the median and the customers at or above the floor they set
    total, median, floor, heavy = conn.execute(
        """
        with counts as materialized (
            select customer_id, count(*) as n from staging.orders where customer_id is not null group by customer_id
        ),
        bound as (
            select coalesce(sum(n), 0)::bigint as total, coalesce(median(n), 0)::double as median from counts
        ),
        floored as (
            select total, median, greatest(?::double, ? * total, ? * median) as floor from bound
        )
        select total, median, floor,
               coalesce((select list(struct_pack(customer_id := c.customer_id, n := c.n) order by c.n desc, c.customer_id)
                         from counts as c where c.n >= f.floor), [])
        from floored as f
        """, [PLAUSIBLE_MIN_ORDERS, PLAUSIBLE_SHARE, PLAUSIBLE_MEDIAN_MULTIPLE]).fetchone()
    total = int(total)
    heavy = [(row["customer_id"], int(row["n"])) for row in heavy]
    listed = ", ".join(f"{customer} ({orders:,} orders, {orders / total:.1%})" for customer, orders in heavy[:5])
    return dg.AssetCheckResult(
        passed=not heavy, severity=dg.AssetCheckSeverity.WARN,
        description=f"no customer holds {floor:,.0f} or more of the {total:,} orders" if not heavy else
        f"customers holding an implausible share of the {total:,} orders: {listed}. If one is a guest placeholder "
        "(a Customer ID of 0 for every guest), name the e-mail column as the customer in store.toml "
        "[files.columns] and import the file again",
        metadata={"orders": total, "median_orders_per_customer": float(median), "order_floor": float(floor),
                  "heavy_customers": len(heavy),
                  **({"examples": dg.MetadataValue.json([[str(c), int(n)] for c, n in heavy[:5]])} if heavy else {})},
    )


PLAUSIBLE_AMOUNT_MULTIPLE = 1000
"""An order of at least this many times the median order's gross revenue is named by
``orders_have_plausible_amounts``."""


@table_check(
    ORDERS, "staging.orders", blocking=False, name="orders_have_plausible_amounts",
    description=f"No order's gross revenue is {PLAUSIBLE_AMOUNT_MULTIPLE:,}x the median order's or more: such an "
    "amount is usually a typo or a misread column (cents as units, an id as an amount).",
)
def orders_have_plausible_amounts(conn) -> dg.AssetCheckResult:
    """Warns, never blocks: a wholesale order can be that large. One order of 1e9 among $20 orders
    makes its customer's CLV and the store's forecast that of the typo (the spend model trusts a
    repeat order), so the run says which orders before a marketer reads the scores."""
    median, floor, examples, n = conn.execute(
        """
        with bound as (
            select median(gross_revenue)::double as median from staging.orders where gross_revenue > 0
        ),
        large as (
            select o.order_id, o.customer_id, o.order_date, o.gross_revenue::double as amount
            from staging.orders as o, bound as b
            where b.median > 0 and o.gross_revenue >= ? * b.median
        )
        select (select median from bound), ? * (select median from bound),
               coalesce((select list(struct_pack(order_id := order_id, customer_id := customer_id, amount := amount)
                                     order by amount desc, order_id) [1:5] from large), []),
               (select count(*) from large)
        """, [PLAUSIBLE_AMOUNT_MULTIPLE, PLAUSIBLE_AMOUNT_MULTIPLE]).fetchone()
    n = int(n)
    listed = ", ".join(f"{row['order_id']} of customer {row['customer_id']} ({row['amount']:,.2f})" for row in examples)
    return dg.AssetCheckResult(
        passed=n == 0, severity=dg.AssetCheckSeverity.WARN,
        description=(f"no order at {PLAUSIBLE_AMOUNT_MULTIPLE:,}x the median order ({median or 0:,.2f}) or more"
                     if n == 0 else
                     f"{n:,} orders of at least {PLAUSIBLE_AMOUNT_MULTIPLE:,}x the median order ({median:,.2f}): "
                     f"{listed}. If an amount is a typo, correct the export (or withdraw the file) and import "
                     "it again; the scores of these customers and the forecast follow these amounts"),
        metadata={"median_order": float(median or 0.0), "amount_floor": float(floor or 0.0), "large_orders": n,
                  **({"examples": dg.MetadataValue.json([[str(r["order_id"]), str(r["customer_id"]), r["amount"]]
                                                         for r in examples])} if n else {})},
    )


@table_check(
    ORDERS, "staging.orders", blocking=False, name="orders_cover_their_span",
    description=f"No run of {MIN_GAP_DAYS} or more days without an order where the store's rate over the "
    f"{CONTEXT_DAYS} days around it leaves one that long empty with a chance below {MAX_EMPTY_PROBABILITY:g}: "
    "usually a part of the export missing (a month's file, a sheet), which every model would read as "
    "customers who stopped buying. Runs that recur in a rhythm (monthly invoicing dates, drops) are the "
    "store's calendar and pass, reported in the metadata. The days from the last order to the as-of date "
    "are held to the same rule at the rate before them.",
)
def orders_cover_their_span(conn) -> dg.AssetCheckResult:
    """Warns, never blocks: a store can close for weeks (a seasonal shop, a move), and only the
    merchant knows. What the run says lets them add the missing file before they trust a forecast
    whose label windows overlap the gap (`transforms.order_gaps`). A live store's silence up to the
    as-of date is a feed that stopped or a closed season, which the models read as unobserved days
    (``order_gaps.silent_tail``): the run says so, with last year's closure when there was one. A
    silence that began a year after a season-long closure began is that season again
    (``Stretches.under_way``): the models read both as the store's closures, and so does the check."""
    stretches = order_stretches(conn)
    try:
        at_as_of = order_stretches(conn, until=scoring_cutoff(conn))
    except ValueError:  # no as-of date (no orders of the store's source): nothing is silent after it
        at_as_of = None
    tail = at_as_of.tail if at_as_of is not None else None
    if at_as_of is not None and at_as_of.under_way is not None:
        stretches = at_as_of
    gaps = stretches.unobserved
    listed = "; ".join(gap.describe() for gap in gaps[:5])
    rhythm = stretches.describe_rhythm()
    season = closed_season_note(gaps)
    description = (("every stretch of the history has the orders its neighbours' rate implies" if not stretches.rhythm
                    else "no stretch without orders looks like missing records") if not gaps else
                   f"{len(gaps)} implausible stretch{'es' if len(gaps) > 1 else ''} without orders: {listed}. "
                   "If part of the export is missing, add the missing file (or fetch the range again): "
                   f"{UNOBSERVED_NOTE}") + (f"; {season}" if season else "") + (f"; {rhythm}" if rhythm else "")
    if tail is not None:  # the history before it, when something is to be said of it
        description = describe_silent_tail(tail, [*gaps, *stretches.rhythm]) + (
            f". {description}" if gaps else f"; {rhythm}" if rhythm else "")
    return dg.AssetCheckResult(
        passed=not gaps and tail is None, severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"gaps": len(gaps), "empty_days": sum(gap.days for gap in gaps),
                  **({"examples": dg.MetadataValue.json([gap.as_dict() for gap in gaps[:5]])} if gaps else {}),
                  "rhythm_runs": len(stretches.rhythm),
                  **({"rhythm": rhythm} if rhythm else {}),
                  "silent_days_before_as_of": tail.days if tail is not None else 0},
    )


def describe_silent_tail(tail, earlier) -> str:
    """What a silence up to the as-of date means, naming a stretch without orders a year before it
    (``earlier``: the history's named and rhythm runs) as a possible closed season."""
    text = (f"no orders from {tail.start} to the as-of date {tail.end} ({tail.days} days) where the store had "
            f"{tail.orders_per_day_around:,.1f} a day before: the models read these days as unobserved, as a missing "
            "part of the export, so the scores stand where they were when the orders stopped. If orders stopped "
            "arriving (a connector, an export cut short), fetch or add them")
    year = timedelta(days=365)
    season = next((gap for gap in earlier if gap.start <= tail.end - year + timedelta(days=MIN_GAP_DAYS)
                   and gap.end >= tail.start - year - timedelta(days=MIN_GAP_DAYS)), None)
    if season is not None:
        text += (f"; the store had none from {season.start} to {season.end} a year before either: if it closes for a "
                 "season, the forecasts count the closed days ahead as days to buy on")
    return text


customers_unique_id = one_row_per_customer_check(
    CUSTOMERS, "staging.customers", name="customers_unique_id", description="customer_id is present and unique.",
    failed="{nulls} null customer ids, {dupes} duplicated, e.g. {examples}", duplicates_key="duplicate_customer_ids",
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


@table_check(
    REJECTED, None,
    description="For every raw table: rows in = rows accepted into staging + rows rejected with a reason.",
)
def staging_rows_reconcile(conn) -> dg.AssetCheckResult:
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


@table_check(
    ORDER_HISTORY, None,
    description="One history row per order with a customer, and each customer's purchases numbered 1..n.",
)
def order_history_matches_orders(conn) -> dg.AssetCheckResult:
    try:
        check_order_history(conn)
    except StaleOrderHistory as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    # a gap or a repeat in purchase_seq would shift every cadence feature of that customer: each
    # customer's sequence is 1..n, i.e. it starts at 1, ends at n and no (customer, seq) repeats
    # (two groupings of the 4M-order history, 0.45 s, where a count(distinct) per customer took 0.75 s,
    # and was run a second time for the examples)
    bounds = """
        select customer_id
        from staging.order_history
        where purchase_seq is not null
        group by customer_id
        having min(purchase_seq) <> 1 or max(purchase_seq) <> count(*)
    """
    repeats = """
        select customer_id
        from staging.order_history
        where purchase_seq is not null
        group by customer_id, purchase_seq
        having count(*) > 1
    """
    if repeated_keys(conn, "staging.order_history", "customer_id, purchase_seq", "purchase_seq is not null"):
        bad, examples = offenders(conn, f"{bounds} union {repeats}")
    else:
        bad, examples = offenders(conn, bounds)
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
    customers_hold_plausible_order_shares,
    orders_have_plausible_amounts,
    orders_cover_their_span,
    staging_rows_reconcile,
    order_history_matches_orders,
]
