"""A synthetic staging store built in SQL, to time the feature SQL at sizes where generating the
demo store's JSON payloads would dominate the run (`--source synthetic`)."""

from __future__ import annotations

import duckdb


def synthetic_staging(conn: duckdb.DuckDBPyConnection, customers: int, seed: float = 0.42) -> None:
    """Fill staging.orders / order_lines / customers with a random store, in SQL.

    Not the demo store: a quick stand-in with the staging contract's columns the feature
    SQL reads (Shopify-style ids, about 2.5 orders per customer and 2 lines per order over
    300 products in 10 categories, 10 % cancelled, some refunds, two years of history), so the feature SQL can be timed at any size.
    `staging.order_history` is left to `build_order_history`, timed as a stage of its own.
    """
    conn.execute("create schema if not exists staging")
    conn.execute("select setseed(?)", [seed])
    conn.execute(
        """
        create or replace table staging.orders as
        with people as (
            select i as c, 1 + cast(floor(-ln(1 - random()) * 2.0) as integer) as n_orders
            from range(?) as t(i)
        ),
        picks as (
            select c, unnest(range(n_orders)) as k from people
        ),
        raw as (
            select
                c, k,
                date '2023-01-01' + cast(floor(random() * 730) as integer) as order_date,
                round(5 + random() * 200, 2) as gross,
                random() as u_cancel,
                random() as u_refund,
                1 + cast(floor(random() * 3) as integer) as line_count
            from picks
        )
        select
            'gid://shopify/Order/' || (5600000000000 + c * 64 + k) as order_id,
            'gid://shopify/Customer/' || (7000000000000 + c) as customer_id,
            order_date,
            order_date + interval (k * 7) minute as created_at,
            u_cancel < 0.1 as is_cancelled,
            case when u_cancel < 0.1 then order_date + interval 2 day end as cancelled_at,
            case when u_cancel < 0.1 then cast(order_date + interval 2 day as date) end as cancelled_on,
            cast(gross as decimal(18, 2)) as gross_revenue,
            cast(round(gross * 0.1, 2) as decimal(18, 2)) as discount_amount,
            cast(case when u_refund < 0.05 then gross when u_refund < 0.12 then round(gross / 3, 2)
                      else 0 end as decimal(18, 2)) as refunded_amount,
            cast(case when u_cancel < 0.1 then 0
                      else greatest(gross - case when u_refund < 0.05 then gross
                                                 when u_refund < 0.12 then round(gross / 3, 2)
                                                 else 0 end, 0) end as decimal(18, 2)) as net_revenue,
            line_count,
            cast(line_count * 2 as bigint) as item_quantity
        from raw
        """,
        [customers],
    )
    conn.execute(
        """
        create or replace table staging.refunds as
        select order_id, 'r-' || order_id as refund_id, customer_id,
               created_at + interval 3 day as refunded_at, cast(created_at + interval 3 day as date) as refunded_on,
               refunded_amount as amount
        from staging.orders
        where refunded_amount > 0
        """
    )
    conn.execute(
        """
        create or replace table staging.order_lines as
        select
            order_id,
            cast(n as integer) as line_number,
            customer_id,
            order_date,
            'gid://shopify/Product/' || (8000000000000 + product) as product_id,
            ['Apparel', 'Shoes', 'Accessories', 'Beauty', 'Home', 'Outdoor', 'Kids', 'Sports', 'Jewelry',
             'Gifts'][1 + product % 10] as category,
            2 as quantity,
            cast(round(random() * 60, 2) as decimal(18, 2)) as line_revenue,
            is_cancelled
        from (
            select *, cast(floor(random() * 300) as integer) as product
            from (select *, unnest(range(1, line_count + 1)) as n from staging.orders)
        )
        """
    )
    conn.execute(
        """
        create or replace table staging.customers as
        select
            customer_id,
            'ES' as country,
            'SUBSCRIBED' as email_consent,
            true as can_receive_email_marketing,
            cast(min(order_date) as timestamp) - interval 30 day as profile_created_at
        from staging.orders
        group by customer_id
        """
    )
