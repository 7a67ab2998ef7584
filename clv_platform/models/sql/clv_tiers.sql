-- rank, percentile and tier of every scored customer (clv.assign_tiers in sql, after the batches
-- are written): rank 1 = highest predicted_clv, ties broken by customer_id; percentile =
-- 100 * (n - rank + 1) / n; tier = the first band whose share x has rank <= x * n, else 'Rest'
-- ({tiers} is generated from clv.TIERS).
create or replace table scores.customer_clv as
with ranked as (
    select *, row_number() over (order by predicted_clv desc, customer_id) as clv_rank, count(*) over () as _n
    from scores.customer_clv
)
select * exclude (_n, model_version, scored_at),
       100.0::double * (_n - clv_rank + 1) / greatest(_n, 1) as clv_percentile,
       case {tiers} else '{rest}' end as clv_tier,
       model_version, scored_at
from ranked
