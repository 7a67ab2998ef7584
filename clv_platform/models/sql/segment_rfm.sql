-- RFM scores of every customer of the store (segments.quantile_scores in sql, so a batch of
-- customers gets the store-wide quintiles): score = ceil(bins x percentile rank) clipped to 1..bins,
-- percentile rank = rank among the non-null values / their count, ties sharing the lowest rank;
-- recency is reversed (most recent scores highest); a missing value scores 1. The column names and
-- bins come from segments.toml [rfm]. A stored scratch table, not a temp one: the batches that join
-- it are read ahead on a cursor of their own (core/batches.py), which sees committed tables only;
-- the step drops it when it ends.
create schema if not exists ml;
create or replace table ml._segment_rfm as
select
    customer_id,
    case when {recency} is null then 1
         else least({bins}, greatest(1, ceil(
             rank() over (order by {recency} desc nulls last)::double / count({recency}) over () * {bins})))
    end::integer as r_score,
    case when {frequency} is null then 1
         else least({bins}, greatest(1, ceil(
             rank() over (order by {frequency} nulls last)::double / count({frequency}) over () * {bins})))
    end::integer as f_score,
    case when {monetary} is null then 1
         else least({bins}, greatest(1, ceil(
             rank() over (order by {monetary} nulls last)::double / count({monetary}) over () * {bins})))
    end::integer as m_score
from features.customer_features
