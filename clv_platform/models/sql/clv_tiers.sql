-- rank, percentile and tier of every scored customer (clv.assign_tiers in sql, after the batches
-- are written): rank 1 = highest predicted_clv, ties broken by customer_id; percentile =
-- 100 * (n - rank + 1) / n; tier = the first band whose share x has rank <= x * n, else 'Rest'
-- ({tiers} is generated from clv.TIERS), and 'Rest' for a customer predicted to spend nothing
-- (0, NULL or NaN) whatever the rank. predicted_clv_point is recomputed over the whole table
-- (objective.sharpen: c * p ^ gamma with c keeping the store's sum of predicted_clv; p scaled by
-- its maximum first, as in numpy), since each batch could only keep its own sum. With the median
-- point rule ({recompute} = false) the point is per customer and the batches' values are kept.
-- {source}: the batches' temp table (write_clv_scores), so the table is written once.
create or replace table scores.customer_clv as
with clipped as (
    select *, case when predicted_clv is null or isnan(predicted_clv) or predicted_clv < 0 then 0.0
                   else predicted_clv end as _p
    from {source}
), powered as (
    select *, case when max(_p) over () > 0 then pow(_p / max(_p) over (), {gamma}) else _p end as _w
    from clipped
), pointed as (
    select * exclude (_p, _w) replace (
        case when not {recompute} then predicted_clv_point
             when {gamma} = 1.0 or max(_p) over () <= 0 then _p
             else _w * sum(_p) over () / sum(_w) over () end as predicted_clv_point)
    from powered
), ranked as (
    select *, row_number() over (order by predicted_clv desc, customer_id) as clv_rank, count(*) over () as _n
    from pointed
)
select * exclude (_n, model_version, scored_at),
       100.0::double * (_n - clv_rank + 1) / greatest(_n, 1) as clv_percentile,
       case when predicted_clv is null or isnan(predicted_clv) or predicted_clv <= 0 then '{rest}'
            {tiers} else '{rest}' end as clv_tier,
       model_version, scored_at
from ranked
