-- ml.cluster_summary from the segments just written (segments.cluster_customers' summary in sql):
-- one row per cluster with its size, revenue and mean profile; means skip missing values.
create or replace table ml.cluster_summary as
with joined as (
    select s.cluster_id as cluster, s.cluster_name as name,
           f.{revenue}::double as revenue, f.{recency}::double as recency,
           f.{frequency}::double as frequency, f.{aov}::double as aov, c.predicted_clv::double as clv
    from scores.customer_segments as s
    join features.customer_features as f using (customer_id)
    left join scores.customer_clv as c using (customer_id)
),
per_cluster as (
    select cluster, any_value(name) as name, count(*) as customers, sum(revenue) as revenue,
           avg(revenue) as mean_revenue, avg(recency) as mean_recency_days, avg(frequency) as mean_frequency,
           avg(aov) as mean_aov, avg(clv) as mean_clv
    from joined
    group by cluster
)
select (row_number() over (order by cluster) - 1)::bigint as index, cluster, name, customers,
       customers / sum(customers) over () as customer_share, revenue,
       revenue / nullif(sum(revenue) over (), 0) as revenue_share, mean_revenue, mean_recency_days,
       mean_frequency, mean_aov, mean_clv
from per_cluster
order by cluster
