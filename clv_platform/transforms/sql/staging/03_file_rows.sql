-- Rows of imported transaction exports, typed and judged. Online Retail II marks
-- returns with an invoice number starting with "C" and a negative quantity; any
-- other negative quantity is an error. When the same order id arrives in two
-- files, the most recently ingested file wins (exports overlap in practice).
create or replace table staging_build._file_rows as
with typed as (
    select
        f.*,
        nullif(trim(f.order_id), '') as order_key,
        nullif(trim(f.customer_id), '') as customer_key,
        coalesce(
            try_cast(trim(f.order_date) as timestamp),
            try_strptime(trim(f.order_date), '%m/%d/%Y %H:%M'),
            try_strptime(trim(f.order_date), '%m/%d/%Y'),
            try_strptime(trim(f.order_date), '%d.%m.%Y')
        ) as order_ts,
        case when nullif(trim(f.quantity), '') is null then 1
             else try_cast(trim(f.quantity) as integer) end as qty,
        try_cast(trim(f.unit_price) as decimal(18, 2)) as price,
        try_cast(trim(f.amount) as decimal(18, 2)) as amount_value,
        f.file_format = 'online_retail' and upper(trim(f.order_id)) like 'C%' as is_return,
        max(f.ingested_at) over (partition by nullif(trim(f.order_id), '')) as latest_ingest_of_order,
        row_number() over (
            partition by f.file_name, f.order_id, f.customer_id, f.order_date, f.product_id,
                         f.description, f.quantity, f.unit_price, f.amount
            order by f.row_number
        ) as copy_number
    from raw.file_transactions as f
),
valued as (
    select
        *,
        case when file_format = 'online_retail' then qty * price else amount_value end as line_value
    from typed
)
select
    *,
    case
        when order_key is null then 'missing order id'
        when customer_key is null then 'missing customer id'
        when order_ts is null then 'unparseable order date: ' || coalesce(order_date, 'empty')
        when qty is null then 'unparseable quantity: ' || quantity
        when file_format = 'online_retail' and price is null
            then 'unparseable price: ' || coalesce(unit_price, 'empty')
        when file_format <> 'online_retail' and amount_value is null
            then 'unparseable amount: ' || coalesce(amount, 'empty')
        when qty < 0 and not is_return then 'negative quantity on a sale (not a return invoice)'
        when qty > 0 and is_return then 'positive quantity on a return invoice'
        when qty = 0 then 'zero quantity'
        when price < 0 or (file_format <> 'online_retail' and amount_value < 0)
            then 'negative price or amount'
        when order_ts > now()::timestamp + interval 1 day then 'order date in the future'
        when ingested_at < latest_ingest_of_order then 'order re-imported from a later file'
        when copy_number > 1 then 'duplicate row'
    end as reject_reason
from valued;
