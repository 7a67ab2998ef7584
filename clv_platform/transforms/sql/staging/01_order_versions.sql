-- Every Shopify order version in scope (`_raw_orders_scope`: all of raw.shopify_orders on a full
-- build, the rows that arrived since the last build on a merge), parsed, with the reason it cannot
-- be used (NULL when it can); 01_rank_order_versions.sql then picks the newest version per order. Parameter: $shop_currency. The money rules
-- (net sales, returns, edits, voided orders) are written out in data_contracts.md, "Revenue".
-- Only scalar columns are kept: the line items
-- and refunds are summarised here (counts, sums, validity) and parsed again from raw by
-- rowid for the accepted versions only (05_staging_tables.sql). Carrying the nested lists
-- of ~5M versions through the version ranking and joins is what made staging need > 4 GB
-- at a million customers; the narrow table spills and ranks cheaply.
create or replace temp view _order_versions_checked as
with parsed as (
    -- clv_parsed_payloads: 00_payload_macros.sql
    select * rename (payload as o) from clv_parsed_payloads('_raw_orders_scope', '{
            "id": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR",
            "createdAt": "VARCHAR", "processedAt": "VARCHAR", "updatedAt": "VARCHAR",
            "cancelledAt": "VARCHAR", "currencyCode": "VARCHAR", "presentmentCurrencyCode": "VARCHAR",
            "test": "BOOLEAN", "taxesIncluded": "BOOLEAN",
            "displayFinancialStatus": "VARCHAR",
            "totalPriceSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"},
                              "presentmentMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
            "totalDiscountsSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
            "totalTaxSet": {"shopMoney": {"amount": "VARCHAR"}},
            "totalShippingPriceSet": {"shopMoney": {"amount": "VARCHAR"}},
            "customer": {"id": "VARCHAR", "email": "VARCHAR", "defaultEmailAddress": {"emailAddress": "VARCHAR"}},
            "lineItems": {"nodes": [{
                "id": "VARCHAR", "quantity": "VARCHAR", "currentQuantity": "VARCHAR", "sku": "VARCHAR",
                "title": "VARCHAR", "isGiftCard": "BOOLEAN",
                "product": {"id": "VARCHAR", "productType": "VARCHAR"},
                "originalUnitPriceSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
                "totalDiscountSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}}
            }]},
            "refunds": [{"id": "VARCHAR", "createdAt": "VARCHAR",
                         "totalRefundedSet": {"shopMoney": {"amount": "VARCHAR", "currencyCode": "VARCHAR"}},
                         "refundLineItems": {"nodes": [{"lineItem": {"id": "VARCHAR", "isGiftCard": "BOOLEAN"},
                                                        "quantity": "VARCHAR",
                                                        "subtotalSet": {"shopMoney": {"amount": "VARCHAR"}}}]},
                         "refundShippingLines": {"nodes": [{
                             "subtotalAmountSet": {"shopMoney": {"amount": "VARCHAR"}},
                             "taxAmountSet": {"shopMoney": {"amount": "VARCHAR"}}}]}}]
        }')
),
typed as (
    select
        * exclude (o),  -- the raw bookkeeping columns of clv_parsed_payloads
        nullif(trim(o.id), '') as order_id,
        o.name as order_name,
        timezone('UTC', try_cast(o.createdAt as timestamptz)) as created_at,
        timezone('UTC', try_cast(o.processedAt as timestamptz)) as processed_at,
        timezone('UTC', try_cast(o.updatedAt as timestamptz)) as updated_at,
        timezone('UTC', try_cast(o.cancelledAt as timestamptz)) as cancelled_at,
        o.cancelledAt is not null as is_cancelled,
        coalesce(o.test, false) as is_test,
        -- Order.currencyCode is the shop currency; the buyer's is presentmentCurrencyCode
        -- (older payloads without it: the presentmentMoney currency)
        coalesce(o.presentmentCurrencyCode, o.totalPriceSet.presentmentMoney.currencyCode, o.currencyCode)
            as presentment_currency,
        coalesce(o.currencyCode, o.totalPriceSet.shopMoney.currencyCode) as order_shop_currency,
        o.totalPriceSet.shopMoney.currencyCode as money_currency,
        upper(o.displayFinancialStatus) as financial_status,
        coalesce(o.taxesIncluded, false) as taxes_included,
        try_cast(o.totalPriceSet.shopMoney.amount as decimal(18, 2)) as total_price,
        coalesce(try_cast(o.totalDiscountsSet.shopMoney.amount as decimal(18, 2)), 0) as discount_amount,
        coalesce(try_cast(o.totalTaxSet.shopMoney.amount as decimal(18, 2)), 0) as tax_amount,
        coalesce(try_cast(o.totalShippingPriceSet.shopMoney.amount as decimal(18, 2)), 0) as shipping_amount,
        nullif(trim(o.customer.id), '') as shopify_customer_id,
        nullif(lower(trim(coalesce(o.customer.defaultEmailAddress.emailAddress, o.customer.email, o.email))), '')
            as email,
        cast(len(coalesce(o.lineItems.nodes, [])) as integer) as line_count,
        -- sold quantity of a line = units still on the order + units refunded (currentQuantity
        -- excludes both refunded and edited-away units; edited-away units were never sold). A gift
        -- card sold (isGiftCard, clv_gift_card) is no product sale: it adds no units and no gross sales.
        list_transform(coalesce(o.lineItems.nodes, []), lambda l: {
            'price': try_cast(l.originalUnitPriceSet.shopMoney.amount as decimal(18, 2)),
            'ordered': try_cast(l.quantity as integer),
            'gift_card': clv_gift_card(l),
            'sold': least(
                try_cast(l.quantity as integer),
                coalesce(try_cast(l.currentQuantity as integer), try_cast(l.quantity as integer))
                + coalesce(list_sum(list_transform(
                    flatten(list_transform(coalesce(o.refunds, []),
                                           lambda r: coalesce(r.refundLineItems.nodes, []))),
                    lambda x: case when x.lineItem.id = l.id then try_cast(x.quantity as integer) else 0 end)), 0)),
            'bad_current': l.currentQuantity is not null and try_cast(l.currentQuantity as integer) is null
        }) as line_facts,
        cast(len(coalesce(o.refunds, [])) as integer) as refund_count,
        -- the products part of each refund: clv_refund_products (00_payload_macros.sql)
        list_transform(coalesce(o.refunds, []), lambda r: {
            'total': try_cast(r.totalRefundedSet.shopMoney.amount as decimal(18, 2)),
            'products': clv_refund_products(r)
        }) as refund_facts,
        -- range guards (macros of 00_value_limits.sql); checked before the parse checks so that a
        -- number too large to cast says so instead of "unparseable"
        coalesce(list_bool_or(list_transform(coalesce(o.lineItems.nodes, []),
            lambda l: clv_quantity_out_of_range(l.quantity))), false) as quantity_out_of_range,
        clv_amount_out_of_range(o.totalPriceSet.shopMoney.amount)
            or clv_amount_out_of_range(o.totalDiscountsSet.shopMoney.amount)
            or clv_amount_out_of_range(o.totalTaxSet.shopMoney.amount)
            or clv_amount_out_of_range(o.totalShippingPriceSet.shopMoney.amount)
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
summed as (
    select
        * exclude (line_facts, refund_facts),
        cast(coalesce(list_sum(list_transform(line_facts,
            lambda f: case when f.gift_card then 0 else f.ordered end)), 0) as bigint) as ordered_quantity,
        cast(coalesce(list_sum(list_transform(line_facts,
            lambda f: case when f.gift_card then 0 else f.sold end)), 0) as bigint) as item_quantity,
        try_cast(coalesce(list_sum(list_transform(line_facts,
            lambda f: case when f.gift_card then 0 else cast(f.sold as decimal(20, 0)) * f.price end)), 0)
            as decimal(18, 2)) as gross_sales,
        coalesce(list_sum(list_transform(refund_facts, lambda f: f.total)), 0) as total_refunded,
        coalesce(list_sum(list_transform(refund_facts, lambda f: f.products)), 0) as product_refunds,
        coalesce(list_bool_or(list_transform(refund_facts,
            lambda f: f.total is null or f.products is null)), false) as bad_refund,
        coalesce(list_bool_or(list_transform(line_facts,
            lambda f: f.ordered is null or f.price is null or f.bad_current)), false) as bad_line
    from typed
),
valued as (
    -- net sales = gross sales - discounts - returns, without tax and shipping; a shop whose
    -- prices include tax has the order's tax taken out of gross sales too
    select
        *,
        financial_status in ('VOIDED', 'EXPIRED') as is_unpaid,
        try_cast(greatest(gross_sales - discount_amount - case when taxes_included then tax_amount else 0 end, 0)
             as decimal(18, 2)) as sales_before_returns
    from summed
),
checked as (
    select
        *,
        case
            when order_id is null then 'missing order id'
            when created_at is null or updated_at is null then 'missing or unparseable createdAt/updatedAt'
            when quantity_out_of_range then 'quantity out of range'
            when amount_out_of_range then 'amount out of range'
            when total_price is null then 'missing or unparseable total price'
            when bad_refund then 'unparseable refund amount'
            when bad_line then 'unparseable line item quantity, current quantity or price'
            when money_currency is distinct from $shop_currency
                then 'amount not in shop currency (' || coalesce(money_currency, 'none') || ')'
            when order_shop_currency is distinct from $shop_currency
                then 'order currencyCode is not the shop currency (' || coalesce(order_shop_currency, 'none') || ')'
            when total_price < 0 then 'negative total price'
            when updated_at > timezone('UTC', now()) + interval 1 day then 'updatedAt in the future'
        end as invalid_reason
    from valued
)
select * from checked;
