"""Point-in-time customer features (RFM, lifecycle, cadence, basket, context) in DuckDB SQL.

Every feature is computed "as of" a cutoff date from the staging tables only, by one SQL
file (`sql/customer_features.sql`) that serves both training (features at C − H, labels
from (C − H, C]) and scoring (features at C). Having a single implementation is what
keeps training and serving consistent; the cutoff is passed as a prepared-statement
parameter, never spliced into the SQL text.

Decisions, and why:

* A *purchase* is a non-cancelled order. Cancellation is judged as of the cutoff
  (`cancelled_at <= cutoff`), so an order that was live on the cutoff day and cancelled
  later still counts; otherwise a backtest would know about cancellations from its future.
* Zero-net (fully refunded) orders *do* count as purchases (they carry 0 spend). The
  customer still came back and bought, which is the behaviour BTYD models count, and
  refunds typically land weeks later — excluding them would make purchase counts depend
  on refund timing.
* The population at a cutoff is every customer (non-null `customer_id`) with at least one
  purchase by the cutoff. A customer whose only orders were cancelled has no first
  purchase, so BTYD quantities (frequency, T) would be undefined for them.
* Transactions are order *days*: several orders on one day are one transaction
  (`frequency` = distinct purchase days − 1, `monetary` = mean net value of the repeat
  days, 0 when there are none), the `lifetimes` convention.
* `discount_share` = discount / (net-of-discount gross + discount): staging's
  `gross_revenue` is Shopify's net sales before returns, already after discounts, so dividing
  by it alone could exceed 1.

* The BTYD's recency and age come twice: in calendar days (`first_to_last_order_days`, `T_days`,
  what the boosters, the lifecycle rule and analysts read) and in observed days
  (`OBSERVED_COLUMNS`), without the days of a stretch without orders that the store's rate cannot
  explain (`transforms.order_gaps`, as seen at the cutoff): a month missing from an export is no
  month in which the customers were seen not to buy. The stretches are found in Python and enter
  the SQL as literals, so the query text stays one for every store.

Refunds count from the shop's calendar day they were made (`staging.refunds.refunded_on`, the day
staging gives each refund for its source, like `order_date`; the history keeps each
order's first and last refund day), so a refund made after the cutoff is unknown at it
(features) and labels see refunds made by the label end.

The query reads `staging.order_history`, the cutoff-independent order sequence built once per
staging build (`transforms/order_history.py`), instead of sorting every order at every cutoff;
it refuses to run when that table is missing or does not match `staging.orders`. The direct
formulation it must agree with row for row is kept as a test oracle
(`clv_platform_tests/transforms/reference_features.sql`). Known
residual leak: the Klaviyo context columns
(`country`, `email_consent`, `can_receive_email_marketing`) are the latest profile state.
The consent columns are therefore kept out of `FEATURE_COLUMNS`.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from clv_platform.resources.storage import qualified, read_sql
from clv_platform.transforms.order_gaps import OrderGap, order_gaps, stretch_days_sql
from clv_platform.transforms.order_history import check_order_history

FEATURE_TABLE = "features.customer_features"

FEATURE_COLUMNS: list[str] = [
    "days_since_last_order",
    "frequency",
    "monetary",
    "avg_order_value",
    "total_net_spend",
    "order_count",
    "purchase_days",
    "T_days",
    "first_to_last_order_days",
    "T_weeks",
    "recency_weeks",
    "mean_interpurchase_days",
    "median_interpurchase_days",
    "std_interpurchase_days",
    "recency_to_interval_ratio",
    "orders_last_30d",
    "orders_last_90d",
    "orders_last_365d",
    "spend_last_90d",
    "spend_prev_90d",
    "spend_trend_90d",
    "orders_next_90d_last_year",
    "spend_next_90d_last_year",
    "items_per_order",
    "distinct_products",
    "distinct_categories",
    "refund_rate",
    "discount_share",
    "first_order_value",
    "profile_age_days",
]
"""Numeric model features. Nullable ones (cadence stats with < 2 or < 3 purchase days,
ratios with a zero denominator, profile age without a profile) are left null on purpose:
tree models handle missing values, and imputing here would hide the difference."""

AFFINE_COPIES: dict[str, str] = {
    "purchase_days": "frequency + 1",
    "T_weeks": "T_days / 7",
    "recency_weeks": "first_to_last_order_days / 7",
}
"""Features that are an exact affine function of another (``sql/customer_features.sql``), kept for
the models (the BTYD reads weeks) but not measured twice for drift: the drift distances (normed
Wasserstein, Jensen-Shannon, and any test that ranks values) do not change under a shift and a
scale, so a copy drifts exactly when its original does, and measuring both counted one change twice
in the share of drifted columns that launches a retrain."""

OBSERVED_COLUMNS = {"observed_recency_days": "first_to_last_order_days",
                    "observed_T_days": "T_days"}
"""The BTYD's recency and age in observed time -> the calendar column each is taken from: without the
days of the stretches without orders the store's rate cannot explain that the span holds
(``transforms.order_gaps``, seen at the cutoff), equal to it when there are none. Every BTYD fit,
prediction and interval key reads these (``btyd_days``); the models' features stay in calendar days."""

CONTEXT_COLUMNS: list[str] = [
    "customer_id",
    "feature_cutoff",
    "first_order_date",
    "last_order_date",
    "cohort_month",
    "country",
    "email_consent",
    "can_receive_email_marketing",
]

LABEL_COLUMNS: list[str] = ["label_spend", "label_orders", "label_purchase_days", "days_to_next_purchase"]

_LABELS_SQL = """
, label_split_refunds as (
    -- what was refunded by the label end of the window's orders refunded on both sides of it
    select r.order_id, sum(cast(r.amount as double)) as refunds
    from staging.refunds as r
    semi join (
        select order_id
        from staging.order_history
        where order_date > $cutoff::date and order_date <= $label_end::date
          and first_refunded_on <= $label_end::date and last_refunded_on > $label_end::date
    ) using (order_id)
    where r.refunded_on <= $label_end::date
    group by r.order_id
),
label_orders as (
    select
        h.customer_id,
        h.order_date,
        h.gross_revenue,
        case when h.last_refunded_on <= $label_end::date then h.refunded_total
             else coalesce(s.refunds, 0) end as refunds
    from staging.order_history as h
    left join label_split_refunds as s using (order_id)
    where h.order_date > $cutoff::date
      and h.order_date <= $label_end::date
      and not (h.is_cancelled and coalesce(h.cancelled_on <= $label_end::date, true))
),
labels as (
    select
        customer_id,
        sum(gross_revenue - least(refunds, gross_revenue)) as label_spend,
        count(*) as label_orders,
        count(distinct order_date) as label_purchase_days,
        min(order_date) - $cutoff::date as days_to_next_purchase
    from label_orders
    group by customer_id
)
select
    f.*,
    $label_end::date as label_end,
    coalesce(l.label_spend, 0) as label_spend,
    coalesce(l.label_orders, 0) as label_orders,
    coalesce(l.label_purchase_days, 0) as label_purchase_days,
    l.days_to_next_purchase
from features as f
left join labels as l on l.customer_id = f.customer_id
order by f.customer_id
"""


def _as_date(cutoff: date) -> date:
    """Accept a date (or datetime, truncated to its day); reject anything else early."""
    if hasattr(cutoff, "date") and callable(cutoff.date):
        cutoff = cutoff.date()
    if not isinstance(cutoff, date):
        raise TypeError(f"cutoff must be a datetime.date, got {type(cutoff).__name__}")
    return cutoff


def feature_sql() -> str:
    """The feature query text: one `select` with a single `$cutoff` DATE parameter."""
    return read_sql("clv_platform.transforms", "sql/customer_features.sql").strip().rstrip(";")


def observed_time_sql(sql: str, gaps: list[OrderGap]) -> str:
    """``sql`` (the feature query) with the ``OBSERVED_COLUMNS`` appended for ``gaps``."""
    recency = stretch_days_sql(gaps, "first_order_date", "last_order_date")
    age = stretch_days_sql(gaps, "first_order_date", "feature_cutoff")
    return (f"select *, first_to_last_order_days - {recency} as observed_recency_days, "
            f"T_days - {age} as observed_T_days from (\n{sql}\n)")


def feature_query(cutoff: date, gaps: list[OrderGap] = ()) -> tuple[str, dict[str, date]]:
    """The feature query and its parameters for `conn.execute(sql, params)`; ``gaps``: the store's
    stretches without orders seen at ``cutoff`` (``cutoff_gaps``), for the ``OBSERVED_COLUMNS``."""
    return observed_time_sql(feature_sql(), list(gaps)), {"cutoff": _as_date(cutoff)}


def cutoff_gaps(conn: duckdb.DuckDBPyConnection, cutoff: date) -> list[OrderGap]:
    """The stretches without orders of `staging.orders` as seen at ``cutoff`` (point in time)."""
    return order_gaps(conn, until=_as_date(cutoff))


def btyd_days(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(recency, age) in days as the BTYD reads them: the ``OBSERVED_COLUMNS`` where the frame has
    them, else its calendar columns (frames rebuilt from ``ml.btyd_scores``, whose weeks are
    observed time already)."""
    recency, age = (column if column in frame.columns else calendar for column, calendar in OBSERVED_COLUMNS.items())
    return frame[recency].to_numpy(dtype=float), frame[age].to_numpy(dtype=float)


def build_features(conn: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """Features as of `cutoff`, one row per customer, ordered by customer_id."""
    check_order_history(conn)
    sql, params = feature_query(cutoff, cutoff_gaps(conn, cutoff))
    return conn.execute(f"select * from ({sql}) order by customer_id", params).df()


def materialize_features(
    conn: duckdb.DuckDBPyConnection, cutoff: date, table: str = FEATURE_TABLE
) -> int:
    """Replace `table` with the features as of `cutoff` (idempotent); return its row count."""
    name = qualified(table)
    check_order_history(conn)
    sql, params = feature_query(cutoff, cutoff_gaps(conn, cutoff))
    conn.execute(f"create schema if not exists {name.split('.')[0]}")
    conn.execute(f"create or replace table {name} as {sql}", params)
    return int(conn.execute(f"select count(*) from {name}").fetchone()[0])


def training_query(cutoff: date, horizon_days: int, gaps: list[OrderGap] = ()) -> tuple[str, dict[str, date]]:
    """Features at `cutoff − horizon_days` joined to labels from (cutoff − H, cutoff].

    The feature part is the same SQL as scoring, parameterized at C − H, so a model
    trained on these rows sees exactly what it will see when scoring at C. ``gaps``: the
    stretches seen at C − H (``cutoff_gaps``), not at C.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    label_end = _as_date(cutoff)
    sql = f"with features as (\n{observed_time_sql(feature_sql(), list(gaps))}\n)\n{_LABELS_SQL}"
    return sql, {"cutoff": label_end - timedelta(days=horizon_days), "label_end": label_end}


def build_training_frame(conn: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int) -> pd.DataFrame:
    """Training rows for customers known at C − H: features at C − H plus labels.

    Labels: `label_spend` (net spend), `label_orders` (non-cancelled orders),
    `label_purchase_days` (distinct purchase days) in (C − H, C], and
    `days_to_next_purchase` (first purchase day after C − H minus C − H; null when the
    customer did not buy in the window — censored at H for a survival model).
    """
    check_order_history(conn)
    sql, params = training_query(cutoff, horizon_days,
                                 cutoff_gaps(conn, _as_date(cutoff) - timedelta(days=horizon_days)))
    return conn.execute(sql, params).df()


def build_scoring_frame(conn: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """Scoring rows: the features as of `cutoff`, same query as training."""
    return build_features(conn, cutoff)
