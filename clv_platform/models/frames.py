"""Transactions frames as a minimal ``staging`` schema, so every data set uses the same feature SQL.

The CLV model is trained on ``transforms/features.py`` features. A backtest on CDNOW or a CSV export
has only ``customer_id, order_date, amount`` rows, not the Shopify-shaped staging tables; instead
of a second feature implementation for such data (which would drift from the one the platform
scores with), the rows are loaded into an in-memory DuckDB as ``staging.orders`` (one order per
row, never cancelled; a return row is a ``staging.refunds`` row of the purchase
``datasets.split_returns`` books it to, on its own date), an empty ``staging.order_lines`` and an
empty ``staging.customers``, and ``staging.order_history`` is built from them: the tables
``sql/customer_features.sql`` reads. Features that come out all-null or constant on such data
(basket, discounts, profile age; refunds on a file without returns) are dropped by
``usable_features`` before training.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from clv_platform.models.datasets import refunded_by_purchase, split_returns
from clv_platform.transforms.order_history import build_order_history

_STAGING_DDL = (
    "create schema if not exists staging",
    """
    create or replace table staging.orders as
    select
        'T' || cast(purchase_id + 1 as varchar) as order_id,
        cast(customer_id as varchar) as customer_id,
        cast(order_date as date) as order_date,
        cast(order_date as timestamp)
            + to_microseconds(row_number() over (partition by customer_id, order_date order by amount))
            as created_at,
        cast(order_date as timestamp) as updated_at,
        false as is_cancelled,
        cast(null as timestamp) as cancelled_at,
        cast(null as date) as cancelled_on,
        cast(amount as decimal(18, 2)) as gross_revenue,
        cast(0 as decimal(18, 2)) as discount_amount,
        cast(least(refunded, amount) as decimal(18, 2)) as refunded_amount,
        cast(amount - least(refunded, amount) as decimal(18, 2)) as net_revenue,
        cast(null as bigint) as item_quantity,
        cast(null as bigint) as line_count
    from purchases_input
    """,
    """
    create or replace table staging.refunds as
    select
        'T' || cast(purchase_id + 1 as varchar) as order_id,
        'R' || cast(row_number() over (order by customer_id, return_date, refund) as varchar) as refund_id,
        cast(customer_id as varchar) as customer_id,
        cast(return_date as timestamp) as refunded_at,
        cast(return_date as date) as refunded_on,
        cast(refund as decimal(18, 2)) as amount
    from returns_input
    where purchase_id >= 0
    """,
    """
    create or replace table staging.order_lines (
        order_id varchar, line_number integer, customer_id varchar, order_date date,
        product_id varchar, sku varchar, category varchar, quantity integer,
        unit_price decimal(18, 2), discount_amount decimal(18, 2), line_revenue decimal(18, 2),
        is_cancelled boolean
    )
    """,
    """
    create or replace table staging.customers (
        customer_id varchar, email varchar, country varchar, email_consent varchar,
        can_receive_email_marketing boolean, profile_created_at timestamp
    )
    """,
)


def load_staging(conn: duckdb.DuckDBPyConnection, transactions: pd.DataFrame) -> int:
    """Create ``staging.orders`` / ``refunds`` / ``order_lines`` / ``customers`` from a transactions frame.

    ``transactions`` has ``customer_id``, ``order_date`` and ``amount`` (the ``datasets`` loaders'
    shape). Amounts are stored as DECIMAL(18,2) like staging's money columns; a negative amount is
    a refund of the purchase ``split_returns`` books it to, dated on its own day (the features and
    labels then count it from that day on, capped at the order); one without an earlier purchase
    reduces nothing. Returns the number of orders written.
    """
    purchases, returns = split_returns(transactions)
    purchases = purchases.assign(refunded=refunded_by_purchase(purchases, returns))
    conn.register("purchases_input", purchases)
    conn.register("returns_input", returns)
    try:
        for statement in _STAGING_DDL:
            conn.execute(statement)
    finally:
        conn.unregister("purchases_input")
        conn.unregister("returns_input")
    build_order_history(conn)
    return int(conn.execute("select count(*) from staging.orders").fetchone()[0])


def staging_connection(transactions: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB holding ``transactions`` as staging tables (caller closes it)."""
    conn = duckdb.connect(":memory:")
    load_staging(conn, transactions)
    return conn


def usable_features(frame: pd.DataFrame, candidates: list[str]) -> list[str]:
    """Candidates present in ``frame`` that are neither all-null nor constant (no signal to learn)."""
    return [c for c in candidates if c in frame and frame[c].nunique(dropna=True) > 1]
