-- Every fetched Shopify order version, parsed, with the reason it cannot be used (NULL
-- when it can). Parameters: $shop_currency. Only scalar columns are kept: the line items
-- and refunds are summarised here (counts, sums, validity) and parsed again from raw by
-- rowid for the accepted versions only (05_staging_tables.sql). Carrying the nested lists
-- of ~5M versions through the version ranking and joins is what made staging need > 4 GB
-- at a million customers; the narrow table spills and ranks cheaply.
create or replace table staging_build._order_versions as
with parsed as (
    select
        r.rowid as raw_rowid,
        r.source,
        r.ingested_at,
        json_transform(r.payload, '{
            "id": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR",
            "createdAt": "VARCHAR", "processedAt": "VARCHAR", "updatedAt": "VARCHAR",
            "cancelledAt": "VARCHAR", "currencyCode": "VARCHAR", "test": "BOOLEAN",
            "displayFinancialStatus": "VARCHAR",
            "totalPriceSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
            "totalDiscountsSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
            "customer": {"id": "VARCHAR", "email": "VARCHAR"},
            "lineItems": {"nodes": [{
                "id": "VARCHAR", "quantity": "VARCHAR", "sku": "VARCHAR", "title": "VARCHAR",
                "product": {"id": "VARCHAR", "productType": "VARCHAR"},
                "originalUnitPriceSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
                "totalDiscountSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}}
            }]},
            "refunds": [{"id": "VARCHAR", "createdAt": "VARCHAR",
                         "totalRefundedSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}}}]
        }') as o
    from raw.shopify_orders as r
),
typed as (
    select
        raw_rowid,
        source,
        ingested_at,
        nullif(trim(o.id), '') as order_id,
        o.name as order_name,
        timezone('UTC', try_cast(o.createdAt as timestamptz)) as created_at,
        timezone('UTC', try_cast(o.processedAt as timestamptz)) as processed_at,
        timezone('UTC', try_cast(o.updatedAt as timestamptz)) as updated_at,
        timezone('UTC', try_cast(o.cancelledAt as timestamptz)) as cancelled_at,
        o.cancelledAt is not null as is_cancelled,
        coalesce(o.test, false) as is_test,
        o.currencyCode as presentment_currency,
        o.totalPriceSet.shopMoney.currencyCode as money_currency,
        o.displayFinancialStatus as financial_status,
        try_cast(o.totalPriceSet.shopMoney.amount as decimal(18, 2)) as gross_revenue,
        coalesce(try_cast(o.totalDiscountsSet.shopMoney.amount as decimal(18, 2)), 0) as discount_amount,
        nullif(trim(o.customer.id), '') as shopify_customer_id,
        nullif(lower(trim(coalesce(o.customer.email, o.email))), '') as email,
        cast(len(coalesce(o.lineItems.nodes, [])) as integer) as line_count,
        cast(coalesce(list_sum(list_transform(coalesce(o.lineItems.nodes, []),
            lambda l: try_cast(l.quantity as integer))), 0) as bigint) as item_quantity,
        cast(len(coalesce(o.refunds, [])) as integer) as refund_count,
        coalesce(list_sum(list_transform(coalesce(o.refunds, []),
            lambda r: try_cast(r.totalRefundedSet.shopMoney.amount as decimal(18, 2)))), 0) as refunded_amount,
        coalesce(list_bool_or(list_transform(coalesce(o.refunds, []),
            lambda r: try_cast(r.totalRefundedSet.shopMoney.amount as decimal(18, 2)) is null)), false) as bad_refund,
        coalesce(list_bool_or(list_transform(coalesce(o.lineItems.nodes, []),
            lambda l: try_cast(l.quantity as integer) is null
                 or try_cast(l.originalUnitPriceSet.shopMoney.amount as decimal(18, 2)) is null)), false) as bad_line,
        -- range guards (macros of 00_value_limits.sql); checked before the parse checks so that a
        -- number too large to cast says so instead of "unparseable"
        coalesce(list_bool_or(list_transform(coalesce(o.lineItems.nodes, []),
            lambda l: clv_quantity_out_of_range(l.quantity))), false) as quantity_out_of_range,
        clv_amount_out_of_range(o.totalPriceSet.shopMoney.amount)
            or clv_amount_out_of_range(o.totalDiscountsSet.shopMoney.amount)
            or coalesce(list_bool_or(list_transform(coalesce(o.lineItems.nodes, []),
                lambda l: clv_amount_out_of_range(l.originalUnitPriceSet.shopMoney.amount)
                       or clv_amount_out_of_range(l.totalDiscountSet.shopMoney.amount)
                       or (not clv_quantity_out_of_range(l.quantity)
                           and clv_line_value_out_of_range(l.quantity, l.originalUnitPriceSet.shopMoney.amount,
                                                           l.totalDiscountSet.shopMoney.amount)))), false)
            or coalesce(list_bool_or(list_transform(coalesce(o.refunds, []),
                lambda r: clv_amount_out_of_range(r.totalRefundedSet.shopMoney.amount))), false)
            or coalesce(abs(list_sum(list_transform(coalesce(o.refunds, []),
                lambda r: try_cast(r.totalRefundedSet.shopMoney.amount as decimal(18, 2))))) >= 1000000000000, false)
            as amount_out_of_range
    from parsed
),
checked as (
    select
        *,
        case
            when order_id is null then 'missing order id'
            when created_at is null or updated_at is null then 'missing or unparseable createdAt/updatedAt'
            when quantity_out_of_range then 'quantity out of range'
            when amount_out_of_range then 'amount out of range'
            when gross_revenue is null then 'missing or unparseable total price'
            when bad_refund then 'unparseable refund amount'
            when bad_line then 'unparseable line item quantity or price'
            when money_currency is distinct from $shop_currency
                then 'amount not in shop currency (' || coalesce(money_currency, 'none') || ')'
            when gross_revenue < 0 then 'negative total price'
            when updated_at > now()::timestamp + interval 1 day then 'updatedAt in the future'
        end as invalid_reason
    from typed
),
ranked as (
    select
        *,
        row_number() over (
            partition by order_id, invalid_reason is null
            order by updated_at desc, ingested_at desc
        ) as version_rank,
        max(updated_at) over (partition by order_id, invalid_reason is null) as latest_updated_at
    from checked
)
select
    *,
    case
        when invalid_reason is not null then invalid_reason
        when version_rank > 1 and updated_at = latest_updated_at
            then 'duplicate of an accepted order version'
        when version_rank > 1 then 'superseded by a newer version of the order'
        when is_test then 'test order'
    end as reject_reason,
    -- a stored flag, not a filter on the CASE above: DuckDB estimates `accepted` from its
    -- statistics, and a 50x under-estimate made the joins build hash tables on the orders
    reject_reason is null as accepted
from ranked;
