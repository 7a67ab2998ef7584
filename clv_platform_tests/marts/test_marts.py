"""Marts built on staging from a small demo store, with right answers recomputed by hand.

Staging comes from the real pipeline code (demo store → raw tables → `build_staging`). The
`scores.*` tables are TEST FIXTURES written here (deterministic fake predictions), standing
in for the model assets so the join logic of the score marts can be checked on its own.
"""

import shutil
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.marts.assets import (
    MART_ASSETS,
    MART_CHECKS,
    create_score_inputs,
    customer_scores,
    customer_scores_one_row_per_customer,
    customer_scores_export,
    segment_history,
    segment_summary,
)
from clv_platform.transforms.staging import build_staging
from clv_platform.models.stored_fits import STORED_FITS
from clv_platform_tests.demo_cache import demo_database

FIXTURE_SCORED_AT = datetime(2026, 11, 2, 3, 0)

# Test fixture: fake model outputs for every customer with a non-cancelled order. Customers whose
# hash ends in 0 get no next-purchase prediction (to check the left join), and the segments
# table names its cluster column `cluster` (to check the alias).
FIXTURE_SCORES_SQL = """
create schema if not exists scores;

create or replace table scores.customer_clv as
with base as (
    select customer_id, sum(net_revenue)::double as spend, max(order_date) as last_order,
           (select max(order_date) from staging.orders) as as_of
    from staging.orders where customer_id is not null and not is_cancelled group by customer_id
),
predicted as (
    select customer_id,
           round(spend * 0.6 + hash(customer_id) % 97, 2) as predicted_clv,
           greatest(0.02, 1 - datediff('day', last_order, as_of) / 500.0) as p_alive,
           round((hash(customer_id) % 50) / 10.0, 2) as expected_purchases
    from base
),
ranked as (
    select *, row_number() over (order by predicted_clv desc, customer_id) as clv_rank, count(*) over () as n
    from predicted
)
select customer_id, predicted_clv, p_alive, expected_purchases, clv_rank,
       -- interval ends as the scoring writes them: not rounded
       predicted_clv * 0.3 + 0.123456789 as predicted_clv_p10, predicted_clv * 1.7 + 0.987654321 as predicted_clv_p90,
       100.0 * (n - clv_rank + 1) / n as clv_percentile,
       case when clv_rank <= 0.01 * n then 'Top 1%' when clv_rank <= 0.1 * n then 'Top 10%'
            when clv_rank <= 0.2 * n then 'Top 20%' else 'Rest' end as clv_tier,
       'fixture-v1' as model_version,
       timestamp '2026-11-02 03:00:00' as scored_at
from ranked;

create or replace table scores.customer_npd as
select customer_id,
       (select max(order_date) from staging.orders) + (1 + hash(customer_id) % 60)::integer
           as predicted_next_purchase_date,
       (hash(customer_id) % 100) / 100.0 as p_purchase_30d,
       least(1.0, (hash(customer_id) % 100) / 80.0) as p_purchase_90d
from scores.customer_clv
where hash(customer_id) % 10 <> 0;

create or replace table scores.customer_segments as
select customer_id,
       ['Champions', 'Loyal', 'At risk', 'Hibernating', 'New'][(1 + hash(customer_id) % 5)::integer] as rfm_segment,
       case when p_alive < 0.3 then 'churned' when p_alive < 0.6 then 'at_risk' else 'active' end
           as lifecycle_stage,
       (hash(customer_id) % 4)::integer as cluster,
       'cluster ' || (hash(customer_id) % 4) as cluster_name
from scores.customer_clv;
"""


def build_demo_warehouse(database: Path, customers: int = 300) -> None:
    """Raw + staging from the demo store, plus the fixture score tables."""
    demo_database(database, customers, seed=11)
    with duckdb.connect(str(database)) as conn:
        for statement in FIXTURE_SCORES_SQL.split(";"):
            if statement.strip():
                conn.execute(statement)


def materialize_marts(database: Path, assets=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets if assets is not None else [*MART_ASSETS, *MART_CHECKS],
        resources={"duckdb": DuckDBResource(database=str(database))},
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("marts")
    mp = pytest.MonkeyPatch()
    mp.delenv("CLV_AS_OF", raising=False)
    mp.setenv("CLV_DATA_DIR", str(tmp))
    mp.setenv("CLV_ANALYTICS_PATH", str(tmp / "analytics.duckdb"))
    mp.setenv("CLV_EXPORT_DIR", str(tmp / "exports"))
    database = tmp / "clv.duckdb"
    build_demo_warehouse(database)
    result = materialize_marts(database)
    yield database, result, tmp
    mp.undo()


def frame(database: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).df()


def rows(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def one(database: Path, sql: str):
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchone()[0]


def test_every_mart_materializes_and_checks_pass(warehouse):
    _, result, _ = warehouse
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    # marts/revenue_forecast fits its seasonality on a fresh warehouse and logs the stored fit
    assert materialized == {key for asset in MART_ASSETS for key in asset.keys} | {STORED_FITS}
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    for asset in MART_ASSETS:
        spec = next(iter(asset.specs))
        assert spec.group_name == "marts" and spec.key.path[0] == "marts"
        assert spec.description and spec.owners == ["team:analytics"]


def test_customer_scores_joins_every_score_table(warehouse):
    database, _, _ = warehouse
    mart = frame(database, "select * from marts.customer_scores")
    clv = frame(database, "select * from scores.customer_clv")
    npd = frame(database, "select * from scores.customer_npd")
    segments = frame(database, "select * from scores.customer_segments")
    customers = frame(database, "select customer_id, email from staging.customers")

    assert len(mart) == len(clv) == mart["customer_id"].nunique() > 100
    assert list(mart.columns[:15]) == [
        "customer_id", "email", "predicted_clv", "p_alive", "expected_purchases",
        "predicted_next_purchase_date", "p_purchase_30d", "rfm_segment", "lifecycle_stage", "cluster_id",
        "clv_rank", "clv_percentile", "clv_tier", "model_version", "scored_at",
    ]
    merged = mart.merge(customers, on="customer_id", suffixes=("", "_staging"))
    assert len(merged) == len(mart) and (merged["email"] == merged["email_staging"]).all()

    without_npd = mart[~mart["customer_id"].isin(npd["customer_id"])]
    assert len(without_npd) > 0 and without_npd["predicted_next_purchase_date"].isna().all()
    with_npd = mart.merge(npd, on="customer_id", suffixes=("", "_npd"))
    assert (with_npd["p_purchase_30d"] == with_npd["p_purchase_30d_npd"]).all()

    with_segments = mart.merge(segments, on="customer_id")
    assert (with_segments["cluster_id"] == with_segments["cluster"]).all()
    assert (with_segments["rfm_segment_x"] == with_segments["rfm_segment_y"]).all()

    assert (mart["as_of_date"].dt.date == one(database, "select max(order_date) from staging.orders")).all()
    someone = mart.sort_values("clv_rank").iloc[0]
    by_hand = one(
        database,
        f"select sum(net_revenue)::double from staging.orders "
        f"where customer_id = '{someone.customer_id}' and not is_cancelled",
    )
    assert someone.historical_revenue == pytest.approx(by_hand)


def test_score_inputs_read_missing_tables_and_columns_as_null():
    conn = duckdb.connect()
    conn.execute("create schema scores")
    conn.execute("create table scores.customer_clv as select 'c1' as customer_id, 10.0 as predicted_clv")
    missing = create_score_inputs(conn)
    assert "scores.customer_npd" in missing and "scores.customer_segments" in missing
    assert "scores.customer_clv.model_version" in missing
    assert conn.execute("select customer_id, predicted_clv, model_version from clv_scores_input").fetchall() == [
        ("c1", 10.0, None)
    ]
    assert conn.execute("select count(*) from npd_scores_input").fetchone()[0] == 0


def test_customer_scores_fails_clearly_without_clv_scores(tmp_path):
    database = tmp_path / "empty.duckdb"
    with duckdb.connect(str(database)) as conn:
        build_staging(conn)
    result = dg.materialize(
        [customer_scores],
        resources={"duckdb": DuckDBResource(database=str(database))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "scores.customer_clv does not exist" in failure.step_failure_data.error.message


def test_revenue_monthly_adds_up_to_staging(warehouse):
    database, _, _ = warehouse
    monthly = frame(database, "select * from marts.revenue_monthly")
    total = one(database, "select sum(net_revenue)::double from staging.orders")
    orders = one(database, "select count(*) from staging.orders where not is_cancelled")
    buyers = one(
        database, "select count(distinct customer_id) from staging.orders where not is_cancelled"
    )
    assert monthly["revenue"].sum() == pytest.approx(total)
    assert monthly["orders"].sum() == orders
    assert monthly["new_customers"].sum() == buyers  # everybody is new exactly once
    parts = monthly["new_customer_revenue"] + monthly["returning_customer_revenue"] + monthly["guest_revenue"]
    assert parts.to_numpy() == pytest.approx(monthly["revenue"].to_numpy())
    # AOV is rounded to cents: times the orders it is off by at most half a cent per order
    off = (monthly["average_order_value"] * monthly["orders"] - monthly["revenue"]).abs()
    assert (off <= 0.005 * monthly["orders"] + 1e-6).all()
    assert monthly["month"].is_monotonic_increasing and monthly["month"].is_unique
    assert monthly["returning_customers"].iloc[0] == 0 and monthly["returning_customers"].sum() > 0


def test_cohort_retention_starts_at_100_percent(warehouse):
    database, _, _ = warehouse
    cohorts = frame(database, "select * from marts.cohort_retention")
    month0 = cohorts[cohorts["months_since_first_order"] == 0]
    assert (month0["retention_share"] == 1.0).all()
    assert (month0["active_customers"] == month0["cohort_customers"]).all()
    assert month0["cohort_customers"].sum() == one(
        database, "select count(distinct customer_id) from staging.orders where not is_cancelled"
    )
    assert cohorts["retention_share"].between(0, 1).all()
    assert (cohorts.loc[cohorts["months_since_first_order"] > 0, "retention_share"] < 1).any()
    known_revenue = one(
        database,
        "select sum(net_revenue)::double from staging.orders where customer_id is not null and not is_cancelled",
    )
    assert cohorts["revenue"].sum() == pytest.approx(known_revenue)
    # every cohort has a row for each month up to the last month with data
    last = one(database, "select date_trunc('month', max(order_date))::date from staging.orders")
    ends = cohorts.groupby("cohort_month")["activity_month"].max()
    assert (ends.dt.date == last).all()


def test_product_repeat_buyer_share_by_hand(warehouse):
    database, _, _ = warehouse
    lines = frame(database, "select * from staging.order_lines where not is_cancelled")
    products = frame(database, "select * from marts.product_performance").set_index("product_id")
    product = products["buyers"].idxmax()
    mine = lines[lines["product_id"] == product]
    orders_per_buyer = mine.dropna(subset=["customer_id"]).groupby("customer_id")["order_id"].nunique()
    row = products.loc[product]
    assert row["buyers"] == len(orders_per_buyer)
    assert row["repeat_buyers"] == (orders_per_buyer >= 2).sum()
    assert row["repeat_buyer_share"] == pytest.approx((orders_per_buyer >= 2).mean())
    assert row["revenue"] == pytest.approx(float(mine["line_revenue"].astype(float).sum()))
    assert products["revenue"].sum() == pytest.approx(float(lines["line_revenue"].astype(float).sum()))

    categories = frame(database, "select * from marts.category_performance").set_index("category")
    assert categories["revenue"].sum() == pytest.approx(products["revenue"].sum())
    assert categories["products"].sum() == len(products)
    category = categories["buyers"].idxmax()
    in_category = lines[lines["category"] == category].dropna(subset=["customer_id"])
    per_buyer = in_category.groupby("customer_id")["order_id"].nunique()
    assert categories.loc[category, "repeat_buyer_share"] == pytest.approx((per_buyer >= 2).mean())


def test_seasonality_covers_every_weekday_and_month(warehouse):
    database, _, _ = warehouse
    season = frame(database, "select * from marts.seasonality")
    weekdays = season[season["period_type"] == "weekday"].set_index("period")
    months = season[season["period_type"] == "month"].set_index("period")
    assert list(weekdays.index) == list(range(1, 8)) and list(months.index) == list(range(1, 13))
    assert weekdays.loc[1, "period_name"] == "Monday" and months.loc[1, "period_name"] == "January"
    first, last = one(database, "select min(order_date) from staging.orders"), one(
        database, "select max(order_date) from staging.orders"
    )
    assert weekdays["days"].sum() == months["days"].sum() == (last - first).days + 1
    revenue = one(database, "select sum(net_revenue)::double from staging.orders")
    for part in (weekdays, months):
        assert part["revenue"].sum() == pytest.approx(revenue)
        assert part["revenue_share"].sum() == pytest.approx(1.0)
        # indices are per-day ratios, so their day-weighted mean is exactly 1
        assert (part["revenue_index"] * part["days"]).sum() / part["days"].sum() == pytest.approx(1.0)


def test_klaviyo_comparison_rank_correlation(warehouse):
    database, result, _ = warehouse
    comparison = frame(database, "select * from marts.klaviyo_comparison")
    expected_rows = one(
        database,
        "select count(*) from marts.customer_scores s join staging.customers c using (customer_id) "
        "where c.klaviyo_predicted_clv is not null",
    )
    assert len(comparison) == expected_rows > 20
    assert comparison["clv_difference"].to_numpy() == pytest.approx(
        (comparison["predicted_clv"] - comparison["klaviyo_predicted_clv"]).to_numpy()
    )
    # ranks with ties sharing the best (SQL rank()), 1 = highest, within the compared customers
    assert comparison["klaviyo_predicted_clv"].duplicated().any()  # cent-rounded values tie: ties are exercised
    for value, rank in (("predicted_clv", "our_clv_rank"), ("klaviyo_predicted_clv", "klaviyo_clv_rank")):
        expected_rank = comparison[value].rank(method="min", ascending=False).astype("int64")
        assert (comparison[rank].to_numpy() == expected_rank.to_numpy()).all(), rank
        assert str(comparison[rank].dtype) == "int64", rank
    metadata = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["marts", "klaviyo_comparison"])
    )
    expected = comparison["predicted_clv"].corr(comparison["klaviyo_predicted_clv"], method="spearman")
    assert metadata["clv_rank_correlation"].value == pytest.approx(expected)
    assert metadata["customers_compared"].value == len(comparison)


def test_segment_and_cluster_summaries_cover_every_customer(warehouse):
    database, _, _ = warehouse
    customers = one(database, "select count(*) from marts.customer_scores")
    sizes = frame(database, "select segment_type, sum(customers) as n, sum(customer_share) as share "
                            "from marts.segment_summary group by 1")
    assert set(sizes["segment_type"]) == {"rfm_segment", "lifecycle_stage", "clv_tier"}
    assert (sizes["n"] == customers).all() and sizes["share"].to_numpy() == pytest.approx(1.0)
    champions = one(database, "select customers from marts.segment_summary where segment = 'Champions'")
    assert champions == one(database, "select count(*) from scores.customer_segments where rfm_segment = 'Champions'")
    clusters = frame(database, "select * from marts.cluster_summary")
    assert len(clusters) == 4 and clusters["customers"].sum() == customers
    assert clusters["cluster_name"].str.startswith("cluster ").all()


def test_segment_history_keeps_one_copy_per_scoring_date(warehouse, tmp_path):
    source, _, _ = warehouse
    database = tmp_path / "copy.duckdb"
    shutil.copy(source, database)
    rerun = [customer_scores, segment_summary, segment_history]
    assert materialize_marts(database, rerun).success  # same scoring date again
    per_date = one(database, "select count(*) from marts.segment_summary")
    history = "select scoring_date, count(*) from marts.segment_history group by 1 order by 1"
    assert rows(database, history) == [(date(2026, 11, 2), per_date)]
    with duckdb.connect(str(database)) as conn:
        conn.execute("update scores.customer_clv set scored_at = scored_at + interval 1 day")
    assert materialize_marts(database, rerun).success
    assert rows(database, history) == [(date(2026, 11, 2), per_date), (date(2026, 11, 3), per_date)]


def test_a_duplicated_score_fails_the_blocking_check_with_numbers_and_stops_the_marts_below(warehouse, tmp_path):
    source, _, _ = warehouse
    database = tmp_path / "copy.duckdb"
    shutil.copy(source, database)
    with duckdb.connect(str(database)) as conn:
        scored = conn.execute("select count(*) from scores.customer_clv").fetchone()[0]
        conn.execute("insert into scores.customer_clv select * from scores.customer_clv order by customer_id limit 2")
        summary_before = conn.execute("select count(*), sum(customers) from marts.segment_summary").fetchone()
    result = dg.materialize(
        [customer_scores, segment_summary, customer_scores_one_row_per_customer],
        resources={"duckdb": DuckDBResource(database=str(database))},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "customer_scores_one_row_per_customer")
    assert not check.passed
    assert check.description == (
        f"marts.customer_scores has {scored + 2:,} rows for {scored:,} distinct customers (2 duplicated) while "
        f"scores.customer_clv holds {scored + 2:,} scores: the marts below it are not built from it")
    assert segment_summary.key not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert one(database, "select count(*) from marts.segment_summary") == summary_before[0]


def test_exports_are_dated_and_idempotent(warehouse):
    database, _, tmp = warehouse
    folder = tmp / "exports"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["customer_scores_2026-11-02.csv", "customer_scores_2026-11-02.parquet"]
    rows = one(database, "select count(*) from marts.customer_scores")
    parquet = pd.read_parquet(folder / "customer_scores_2026-11-02.parquet")
    csv = pd.read_csv(folder / "customer_scores_2026-11-02.csv")
    assert len(parquet) == len(csv) == rows
    assert list(parquet["clv_rank"]) == sorted(parquet["clv_rank"])
    assert set(csv["customer_id"]) == set(parquet["customer_id"])
    # the CSV's doubles are rounded to CSV_DECIMALS (test_export_retention), the Parquet's are the mart's
    with duckdb.connect(str(database), read_only=True) as conn:
        mart = conn.execute("select * from marts.customer_scores order by clv_rank, customer_id").df()
    doubles = [c for c in mart.columns if mart[c].dtype == "float64"]
    assert {"p_alive", "p_purchase_30d", "predicted_clv"} <= set(doubles)
    pd.testing.assert_frame_equal(parquet[doubles], mart[doubles])
    by_id = csv.set_index("customer_id").loc[parquet["customer_id"]]
    for column in ("p_alive", "p_purchase_30d", "expected_purchases", "predicted_clv"):
        assert np.allclose(by_id[column].to_numpy(), parquet[column].to_numpy(), rtol=0, atol=0.5e-6, equal_nan=True)
    result = materialize_marts(database, [customer_scores_export])  # same date: overwritten
    assert result.success
    assert sorted(p.name for p in folder.iterdir()) == files
    # the folder's size is in the metadata (by default nothing prunes old exports)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    sizes = {name: (folder / name).stat().st_size for name in files}
    assert metadata["export_files_on_disk"].value == 2
    assert metadata["export_bytes_on_disk"].value == sum(sizes.values()) > 0
    assert metadata["csv_bytes"].value == sizes["customer_scores_2026-11-02.csv"]


def test_every_mart_column_is_described_in_the_ui_and_in_duckdb(warehouse):
    """One source (data_contract.toml) -> the column schema of each materialization and the
    DuckDB comments of the working database and the published snapshot."""
    from clv_platform import contract
    from clv_platform.marts.publish import SNAPSHOT_INFO_TABLE

    database, result, tmp = warehouse
    tables = [f"marts.{asset.key.path[-1]}" for asset in MART_ASSETS
              if asset.key.path[-1] not in ("customer_scores_export", "analytics_snapshot")]
    schemas = {
        "marts." + e.asset_key.path[-1]: e.materialization.metadata["dagster/column_schema"].schema
        for e in result.get_asset_materialization_events()
        if "dagster/column_schema" in e.materialization.metadata
    }
    assert set(schemas) == set(tables)
    for path in (database, tmp / "analytics.duckdb"):
        with duckdb.connect(str(path), read_only=True) as conn:
            for table in tables + ([SNAPSHOT_INFO_TABLE] if path != database else []):
                assert contract.undescribed(conn, table) == [], table
                schema, name = table.split(".")
                comments = conn.execute(
                    "select column_name, comment from duckdb_columns() where schema_name = ? and table_name = ?",
                    [schema, name],
                ).fetchall()
                assert comments and all(c == contract.describe(table, col) for col, c in comments), table
    columns = {c.name: c for c in schemas["marts.customer_scores"].columns}
    assert columns["predicted_clv"].description == contract.describe("marts.customer_scores", "predicted_clv")
    assert columns["clv_rank"].type == "bigint"


def test_money_in_the_marts_is_rounded_to_cents(warehouse):
    database, _, _ = warehouse
    money = {
        "customer_scores": ["predicted_clv", "historical_revenue", "predicted_clv_p10", "predicted_clv_p90"],
        "segment_summary": ["total_predicted_clv", "mean_predicted_clv", "historical_revenue"],
        "cluster_summary": ["total_predicted_clv", "mean_predicted_clv", "historical_revenue", "mean_historical_revenue"],
        "revenue_monthly": ["revenue", "average_order_value", "new_customer_revenue", "guest_revenue"],
        "product_performance": ["revenue", "revenue_per_order"],
        "seasonality": ["revenue", "revenue_per_day"],
    }
    for table, columns in money.items():
        for column in columns:
            values = frame(database, f"select {column} as v from marts.{table} where {column} is not null")["v"]
            assert len(values) > 0
            assert (values.round(2) - values).abs().max() < 1e-9, f"{table}.{column}"
    # rounding keeps the totals: the monthly revenue still adds up to staging to the cent
    total = one(database, "select sum(revenue) from marts.revenue_monthly")
    staged = one(database, "select sum(net_revenue)::double from staging.orders where not is_cancelled")
    assert total == pytest.approx(staged, abs=0.01 * len(frame(database, "select * from marts.revenue_monthly")))


def test_segment_summary_ranks_segments_by_value_and_publishes_them_in_that_order(warehouse):
    database, _, tmp = warehouse
    for path in (database, tmp / "analytics.duckdb"):
        with duckdb.connect(str(path), read_only=True) as conn:
            rows = conn.execute(
                "select segment_type, segment, value_rank, total_predicted_clv from marts.segment_summary"
            ).fetchall()
        by_type: dict[str, list] = {}
        for segment_type, _, rank, value in rows:
            by_type.setdefault(segment_type, []).append((rank, value))
        # rows come grouped by type, each group 1, 2, 3 ... with falling value
        assert [t for t, *_ in rows] == sorted(t for t, *_ in rows)
        for ranked in by_type.values():
            assert [r for r, _ in ranked] == list(range(1, len(ranked) + 1))
            values = [v for _, v in ranked]
            assert values == sorted(values, reverse=True)


REVENUE_MONTHLY_BY_DISTINCT_SQL = """
with labelled as (
    select date_trunc('month', o.order_date)::date as month, o.customer_id, o.net_revenue::double as net_revenue,
           case when o.customer_id is null then 'guest'
                when date_trunc('month', o.order_date) = f.first_month then 'new' else 'returning' end as kind
    from staging.orders o
    left join (select customer_id, date_trunc('month', min(order_date)) as first_month from staging.orders
               where customer_id is not null and not is_cancelled group by 1) f using (customer_id)
    where not o.is_cancelled
)
select month, round(sum(net_revenue), 2) as revenue, count(*) as orders,
       round(sum(net_revenue) / count(*), 2) as average_order_value, count(distinct customer_id) as customers,
       count(distinct customer_id) filter (where kind = 'new') as new_customers,
       count(distinct customer_id) filter (where kind = 'returning') as returning_customers,
       round(coalesce(sum(net_revenue) filter (where kind = 'new'), 0), 2) as new_customer_revenue,
       round(coalesce(sum(net_revenue) filter (where kind = 'returning'), 0), 2) as returning_customer_revenue,
       count(*) filter (where kind = 'guest') as guest_orders,
       round(coalesce(sum(net_revenue) filter (where kind = 'guest'), 0), 2) as guest_revenue,
       coalesce(sum(net_revenue) filter (where kind = 'returning'), 0) / sum(net_revenue) as returning_revenue_share
from labelled group by month order by month
"""


def test_revenue_monthly_equals_the_count_distinct_formulation(warehouse):
    """The mart counts customers as rows of a per-(month, customer) aggregate; the direct formulation
    with count(distinct) over every order must give the same table (money to the cent, shares to 1e-12)."""
    database, _, _ = warehouse
    got = frame(database, "select * from marts.revenue_monthly order by month")
    expected = frame(database, REVENUE_MONTHLY_BY_DISTINCT_SQL)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 12
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12, atol=0.0)
    assert got["guest_orders"].sum() > 0 and got["returning_customers"].sum() > 0
