-- Rows of imported transaction exports, typed and judged (rules: data_contracts.md, "Files").
--
-- * Ids written as integral floats by a spreadsheet (17850.0) are the same id as 17850.
-- * A file whose decimals are written with a comma (decimal_separator = ',', detected per file
--   at import: `6,95`, `1.234,50`) is read as such.
-- * A timestamp with an offset (…-05:00, …Z) is converted to the store's time zone; one
--   without is already in it.
-- * Line level (Online Retail): an invoice starting with "C" is a credit note (negative
--   quantity); its lines become refunds of the original sale in 05. An invoice starting with
--   "A" is a bad-debt adjustment, not a customer transaction. Zero-price lines carry no revenue.
--   Postage (POST, DOT, C2) and manual/adjustment codes (M, D, S, B, BANK CHARGES, AMAZONFEE,
--   CRUK, PADS) are kept as non-product lines of their invoice (line_kind).
-- * Every amount must fit the limits of the data contract (|line| and |order| ≤
--   999,999,999,999.99, quantity a 32-bit integer); a value outside them is a rejected row,
--   never a failed staging. Arithmetic is done in DECIMAL(38, 4), which cannot overflow here.
-- * When the same order id arrives in two files, the most recently ingested file's *valid*
--   rows win (exports overlap in practice); a later file's invalid rows replace nothing.
create or replace table staging_build._file_rows as
with keyed as (
    select
        f.*,
        nullif(regexp_replace(trim(f.order_id), '^([0-9]+)\.0+$', '\1'), '') as order_key,
        nullif(regexp_replace(trim(f.customer_id), '^([0-9]+)\.0+$', '\1'), '') as customer_key,
        nullif(regexp_replace(trim(f.product_id), '^([0-9]+)\.0+$', '\1'), '') as product_key,
        nullif(upper(trim(f.currency)), '') as currency_code,
        trim(f.order_date) as date_text,
        regexp_matches(trim(f.order_date), '(Z|[+-][0-9]{2}:?[0-9]{2})$') as has_offset,
        nullif(trim(f.quantity), '') as qty_text,
        nullif(case when f.decimal_separator = ','
                    then replace(replace(trim(f.unit_price), '.', ''), ',', '.')
                    else trim(f.unit_price) end, '') as price_text,
        nullif(case when f.decimal_separator = ','
                    then replace(replace(trim(f.amount), '.', ''), ',', '.')
                    else trim(f.amount) end, '') as amount_text
    from raw.file_transactions as f
),
typed as (
    select
        *,
        case
            when has_offset then timezone($store_timezone, try_cast(date_text as timestamptz))
            else coalesce(
                try_cast(date_text as timestamp),
                try_strptime(date_text, '%m/%d/%Y %H:%M'),
                try_strptime(date_text, '%m/%d/%Y %H:%M:%S'),
                try_strptime(date_text, '%m/%d/%Y'),
                try_strptime(date_text, '%d.%m.%Y %H:%M'),
                try_strptime(date_text, '%d.%m.%Y')
            )
        end as order_ts,
        try_cast(qty_text as double) as qty_double,
        try_cast(price_text as decimal(38, 2)) as price_wide,
        try_cast(amount_text as decimal(38, 2)) as amount_wide,
        try_cast(price_text as double) as price_double,
        try_cast(amount_text as double) as amount_double,
        file_format = 'online_retail' and upper(order_key) like 'C%' as is_return,
        file_format = 'online_retail' and upper(order_key) like 'A%' as is_bad_debt,
        case
            when upper(product_key) in ('POST', 'DOT', 'C2') then 'postage'
            when upper(product_key) in ('M', 'D', 'S', 'B', 'BANK CHARGES', 'AMAZONFEE', 'CRUK', 'PADS')
                then 'adjustment'
            else 'product'
        end as line_kind
    from keyed
),
counted as (
    select
        *,
        case
            when qty_text is null then 1
            when try_cast(qty_text as integer) is not null then try_cast(qty_text as integer)
            -- "6.0" from a spreadsheet is 6; 2.5 or 3e9 are not a quantity
            when qty_double = floor(qty_double) and abs(qty_double) < 2147483648 then cast(qty_double as integer)
        end as qty
    from typed
),
valued as (
    select
        *,
        case when file_format = 'online_retail' then cast(qty as decimal(38, 2)) * price_wide
             else amount_wide end as value_wide
    from counted
),
judged as (
    select
        *,
        case
            when parse_error is not null then parse_error
            when order_key is null then 'missing order id'
            when is_bad_debt then 'bad-debt adjustment (A invoice): not a customer transaction'
            when customer_key is null then 'missing customer id'
            when currency_code is null then 'missing currency (no currency column value and no store file_currency)'
            when currency_code <> $shop_currency
                then 'currency ' || currency_code || ' differs from the store currency ' || $shop_currency
            when order_ts is null then 'unparseable order date: ' || coalesce(order_date, 'empty')
            when qty is null and abs(qty_double) >= 2147483648 then 'quantity out of range: ' || quantity
            when qty is null then 'unparseable quantity: ' || quantity
            when file_format = 'online_retail' and price_double is null
                then 'unparseable price: ' || coalesce(unit_price, 'empty')
            when file_format = 'online_retail' and (price_wide is null or abs(price_wide) > 999999999999.99)
                then 'price out of range: ' || unit_price
            when file_format <> 'online_retail' and amount_double is null
                then 'unparseable amount: ' || coalesce(amount, 'empty')
            when file_format <> 'online_retail' and (amount_wide is null or abs(amount_wide) > 999999999999.99)
                then 'amount out of range: ' || amount
            when abs(value_wide) > 999999999999.99
                then 'amount out of range: ' || cast(cast(value_wide as decimal(38, 2)) as varchar)
            when qty < 0 and not is_return then 'negative quantity on a sale (not a return invoice)'
            when qty > 0 and is_return then 'positive quantity on a return invoice'
            when qty = 0 then 'zero quantity'
            when price_wide < 0 or (file_format <> 'online_retail' and amount_wide < 0)
                then 'negative price or amount'
            when file_format = 'online_retail' and price_wide = 0
                then 'zero price (no revenue: a free or placeholder line)'
            when order_ts > timezone($store_timezone, now()) + interval 1 day then 'order date in the future'
        end as base_reason
    from valued
),
latest as (
    select
        *,
        -- only valid rows can replace an order: an invalid re-send keeps the earlier file's rows
        max(case when base_reason is null then ingested_at end) over (partition by order_key)
            as latest_ingest_of_order,
        row_number() over (
            partition by file_name, sheet_name, order_id, customer_id, order_date, product_id,
                         description, quantity, unit_price, amount
            order by row_number
        ) as copy_number
    from judged
),
judged_rows as (
    select
        * exclude (base_reason),
        case
            when base_reason is not null then base_reason
            when ingested_at < latest_ingest_of_order then 'order re-imported from a later file'
            when copy_number > 1 then 'duplicate row'
        end as row_reason
    from latest
),
order_totals as (
    select order_key, sum(value_wide) as order_total
    from judged_rows
    where row_reason is null and not is_return
    group by order_key
)
select
    r.* exclude (row_reason, value_wide),
    cast(case when abs(r.value_wide) <= 999999999999.99 then r.value_wide end as decimal(18, 2)) as line_value,
    cast(case when abs(r.price_wide) <= 999999999999.99 then r.price_wide end as decimal(18, 2)) as price,
    case
        when r.row_reason is not null then r.row_reason
        when abs(t.order_total) > 999999999999.99
            then 'order total out of range: ' || cast(cast(t.order_total as decimal(38, 2)) as varchar)
    end as reject_reason
from judged_rows as r
left join order_totals as t on t.order_key = r.order_key and not r.is_return;

-- Credit-note lines matched to the sale they give money back for: the customer's latest sale of
-- the same stock code at or before the credit note; failing that, the customer's latest order at or
-- before it; failing that (a file of returns only, or a return older than the export) none: the
-- return is booked on its own date in staging.returns and reduces no order.
create or replace table staging_build._file_credits as
with credits as (
    select order_key as credit_key, customer_key, product_key, order_ts, file_name, sheet_name, row_number,
           -qty as quantity, -line_value as amount
    from staging_build._file_rows
    where reject_reason is null and is_return
),
sale_products as (
    select order_key, customer_key, product_key, min(order_ts) as order_ts
    from staging_build._file_rows
    where reject_reason is null and not is_return and product_key is not null
    group by order_key, customer_key, product_key
),
sale_orders as (
    select order_key, customer_key, min(order_ts) as order_ts
    from staging_build._file_rows
    where reject_reason is null and not is_return
    group by order_key, customer_key
),
by_product as (
    select c.*, s.order_key as product_match
    from credits as c
    asof left join sale_products as s
        on c.customer_key = s.customer_key and c.product_key = s.product_key and c.order_ts >= s.order_ts
),
by_customer as (
    select b.*, o.order_key as customer_match
    from by_product as b
    asof left join sale_orders as o on b.customer_key = o.customer_key and b.order_ts >= o.order_ts
)
select
    * exclude (product_match, customer_match),
    coalesce(product_match, customer_match) as matched_order_key,
    case when product_match is not null then 'customer and stock code'
         when customer_match is not null then 'customer'
         else 'none' end as matched_by
from by_customer;
