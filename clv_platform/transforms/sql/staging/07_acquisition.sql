-- staging.customer_acquisition: how each customer came in, read from their first order.
--
-- One row per customer with a never-cancelled order (the first of staging.order_history's
-- purchase sequence). The attribution fields come from that order's accepted Shopify payload
-- (`sourceName`, `discountCodes`, `customerJourneySummary.firstVisit` / `lastVisit`); a first
-- order imported from a file has none, and an order without an online session (POS, drafts,
-- attribution not ready) has a null journey. Both stay in the table with channel 'unknown'
-- (or 'pos'), so every customer is counted somewhere.
--
-- channel is derived from the *first* visit (the touch that brought the customer), in this order:
--   e-mail: utm_medium 'email' or utm_source 'klaviyo' / 'mailchimp' or source 'email' or a
--           newsletter / abandoned-cart / transactional tactic;
--   paid:   a paid utm_medium ('cpc', 'ppc', 'paid', 'paid_social', 'paidsocial', 'display') or an
--           AD / RETARGETING tactic: paid_social for a social network, else paid_search;
--   organic_search: the SEO tactic or a search engine as source or referrer;
--   organic_social: a social network as source or referrer;
--   direct: source 'direct', or no referrer and no utm;  referral: anything else.
create or replace table staging.customer_acquisition as
with firsts as (
    select h.customer_id, h.order_id, h.order_date, h.created_at
    from staging.order_history as h
    where h.purchase_seq = 1
),
payloads as (
    select
        f.*,
        o.net_revenue::double as first_order_net_revenue,
        o.source as order_source,
        r.payload
    from firsts as f
    join staging.orders as o on o.order_id = f.order_id
    left join staging_build._resolved_orders as ro on ro.order_id = f.order_id
    left join raw.shopify_orders as r on r.rowid = ro.raw_rowid
),
parsed as (
    -- one json_transform per payload (each json_extract would parse the ~2 KB document again):
    -- a missing key and a JSON null both give a null struct: no journey / no visit
    select
        customer_id,
        order_id as first_order_id,
        order_date as first_order_date,
        created_at as first_order_created_at,
        first_order_net_revenue,
        order_source,
        payload is not null as has_payload,
        nullif(trim(p.sourceName), '') as source_name,
        coalesce(
            list_filter(list_transform(p.discountCodes, lambda c: upper(trim(c))), lambda c: c is not null and c <> ''),
            []::varchar[]) as discount_codes,
        p.customerJourneySummary.firstVisit as fv,
        p.customerJourneySummary.lastVisit as lv,
        p.customerJourneySummary as journey
    from (
        select *, json_transform(payload, '{
            "sourceName": "VARCHAR", "discountCodes": ["VARCHAR"],
            "customerJourneySummary": {
                "firstVisit": {"source": "VARCHAR", "sourceType": "VARCHAR", "landingPage": "VARCHAR",
                               "referrerUrl": "VARCHAR",
                               "utmParameters": {"source": "VARCHAR", "medium": "VARCHAR", "campaign": "VARCHAR",
                                                 "content": "VARCHAR", "term": "VARCHAR"}},
                "lastVisit": {"source": "VARCHAR", "sourceType": "VARCHAR", "landingPage": "VARCHAR",
                              "referrerUrl": "VARCHAR",
                              "utmParameters": {"source": "VARCHAR", "medium": "VARCHAR", "campaign": "VARCHAR",
                                                "content": "VARCHAR", "term": "VARCHAR"}}}
        }') as p
        from payloads
    )
),
visits as (
    -- clv_visit: 00_payload_macros.sql; each visit's fields as first_visit_* / last_visit_* columns
    select
        * exclude (fv, lv, journey, first_visit, last_visit),
        journey is not null as has_journey,
        columns(first_visit.*) as 'first_visit_\0',
        columns(last_visit.*) as 'last_visit_\0',
        fv is not null as has_first_visit
    from (select *, clv_visit(fv) as first_visit, clv_visit(lv) as last_visit from parsed)
),
hosts as (
    select
        *,
        lower(regexp_extract(first_visit_referrer_url, '^[a-z]+://(?:www\.|l\.|m\.)?([^/:?#]+)', 1)) as referrer_host
    from visits
),
classified as (
    select
        *,
        (first_visit_source in ('google', 'bing', 'yahoo', 'duckduckgo', 'ecosia', 'baidu', 'yandex')
         or regexp_matches(coalesce(referrer_host, ''), '(^|\.)(google|bing|yahoo|duckduckgo|ecosia|baidu|yandex)\.'))
            as from_search,
        (first_visit_source in ('facebook', 'instagram', 'tiktok', 'pinterest', 'twitter', 'x', 'snapchat',
                                'youtube', 'linkedin', 'reddit', 'meta')
         or first_visit_utm_source in ('facebook', 'fb', 'instagram', 'ig', 'tiktok', 'pinterest', 'meta',
                                       'snapchat', 'youtube', 'linkedin', 'reddit')
         or regexp_matches(coalesce(referrer_host, ''),
                           '(^|\.)(facebook|instagram|tiktok|pinterest|twitter|t|snapchat|youtube|linkedin|reddit)\.'))
            as from_social
    from hosts
)
select
    customer_id,
    first_order_id,
    first_order_date,
    first_order_created_at,
    first_order_net_revenue,
    source_name,
    discount_codes,
    coalesce(discount_codes[1], '(none)') as discount_code,
    has_journey,
    case
        when not has_payload then 'unknown'
        when not has_first_visit and source_name = 'pos' then 'pos'
        when not has_first_visit then 'unknown'
        when first_visit_utm_medium = 'email' or first_visit_utm_source in ('klaviyo', 'mailchimp')
             or first_visit_source = 'email'
             or first_visit_source_type in ('NEWSLETTER', 'ABANDONED_CART', 'TRANSACTIONAL') then 'email'
        when first_visit_utm_medium in ('cpc', 'ppc', 'paid', 'paid_social', 'paidsocial', 'display')
             or first_visit_source_type in ('AD', 'RETARGETING')
            then case when from_social then 'paid_social' else 'paid_search' end
        when first_visit_source_type = 'SEO' or from_search then 'organic_search'
        when from_social then 'organic_social'
        when first_visit_source = 'direct'
             or (first_visit_referrer_url is null and first_visit_utm_source is null) then 'direct'
        else 'referral'
    end as channel,
    coalesce(first_visit_utm_campaign, '(none)') as campaign,
    first_visit_source,
    first_visit_source_type,
    first_visit_utm_source,
    first_visit_utm_medium,
    first_visit_utm_campaign,
    first_visit_utm_content,
    first_visit_utm_term,
    first_visit_landing_page,
    first_visit_referrer_url,
    last_visit_source,
    last_visit_source_type,
    last_visit_utm_source,
    last_visit_utm_medium,
    last_visit_utm_campaign,
    last_visit_landing_page,
    last_visit_referrer_url
from classified
order by customer_id;
