-- net revenue of never-cancelled orders per calendar month (forecast.revenue.monthly_actuals in sql).
select date_trunc('month', order_date)::timestamp as month, sum(net_revenue::double) as actual_revenue
from staging.orders
where not is_cancelled
group by all
order by month
