-- clv_parsed_payloads(scope, structure): the rows of a raw-scope view (`_raw_orders_scope`,
-- `_raw_profiles_scope`) with their JSON payload parsed by json_transform into `structure`.
-- 01_order_versions.sql and 02_profile_versions.sql both start this way; one macro keeps the
-- raw bookkeeping columns (raw_rowid, source, ingested_at) the same for both kinds of version.
create or replace temp macro clv_parsed_payloads(scope, structure) as table
    select r.raw_rowid, r.source, r.ingested_at, json_transform(r.payload, structure) as payload
    from query_table(scope) as r;

-- clv_visit(v): the attribution fields of one visit of an order's customerJourneySummary (a
-- struct that 07_acquisition.sql's json_transform parses once per payload), blank text as null and the source,
-- utm source and utm medium in lower case. 07_acquisition.sql reads the first and the last visit
-- with it, so both are cleaned by the same rules.
create or replace temp macro clv_visit_text(t) as nullif(trim(t), '');
create or replace temp macro clv_visit(v) as {
    'source': lower(clv_visit_text(v.source)),
    'source_type': clv_visit_text(v.sourceType),
    'utm_source': lower(clv_visit_text(v.utmParameters.source)),
    'utm_medium': lower(clv_visit_text(v.utmParameters.medium)),
    'utm_campaign': clv_visit_text(v.utmParameters.campaign),
    'utm_content': clv_visit_text(v.utmParameters.content),
    'utm_term': clv_visit_text(v.utmParameters.term),
    'landing_page': clv_visit_text(v.landingPage),
    'referrer_url': clv_visit_text(v.referrerUrl)
};

-- An order's revenue after its refunds, one rule for both sources (Shopify orders and imported
-- files) and either revenue basis: refunds never take more than the revenue they return, and an
-- order that is not a purchase (cancelled, or its payment voided / expired) is worth 0.
create or replace temp macro clv_refunded(refunds, revenue) as cast(least(refunds, revenue) as decimal(18, 2));
create or replace temp macro clv_net_of_refunds(revenue, refunds, not_purchase) as
    cast(case when not_purchase then 0 else greatest(revenue - refunds, 0) end as decimal(18, 2));

-- A gift card sold is not a product sale (data_contracts.md, "Revenue"): LineItem.isGiftCard, "whether
-- the line item represents the purchase of a gift card" (shopify.dev admin-graphql LineItem). Shopify
-- books the card as a liability and counts it as sales when it is redeemed (paying with a gift card is
-- a payment, not a discount). Its line adds no gross sales or units, and a refund of it returns no
-- products. `l` is a line item, or the lineItem of a refund line; payloads without the field: false.
create or replace temp macro clv_gift_card(l) as coalesce(l.isGiftCard, false);

-- The products part of one Shopify refund (data_contracts.md, "Revenue (Shopify net sales)"),
-- the one statement of the rule for 01_order_versions.sql and 05_staging_tables.sql: the
-- subtotals of its refunded lines (a refunded gift card is none: clv_gift_card); a refund without
-- refunded lines is its totalRefundedSet (all
-- the money given back) minus the shipping it refunded (each refundShippingLines node's
-- subtotalAmountSet + taxAmountSet), never below 0 - a shipping-only refund returns no products.
-- NULL when an amount does not parse (the version is rejected: "unparseable refund amount").
-- (greatest() would skip a NULL, so the floor is a case)
create or replace temp macro clv_not_below_zero(d) as case when d < 0 then 0 else d end;
create or replace temp macro clv_refund_shipping(amounts) as
    case when list_bool_or(list_transform(amounts, lambda a: a is null)) then null
         else coalesce(list_sum(amounts), 0) end;
create or replace temp macro clv_refund_products(r) as
    case when len(coalesce(r.refundLineItems.nodes, [])) > 0
        then list_sum(list_transform(r.refundLineItems.nodes,
            lambda x: case when clv_gift_card(x.lineItem) then 0
                           else try_cast(x.subtotalSet.shopMoney.amount as decimal(18, 2)) end))
        else clv_not_below_zero(try_cast(r.totalRefundedSet.shopMoney.amount as decimal(18, 2))
            - clv_refund_shipping(list_transform(coalesce(r.refundShippingLines.nodes, []),
                lambda s: try_cast(s.subtotalAmountSet.shopMoney.amount as decimal(18, 2))
                          + try_cast(s.taxAmountSet.shopMoney.amount as decimal(18, 2))))) end;
