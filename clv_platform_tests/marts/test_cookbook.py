"""Every cookbook query runs against a published snapshot of the demo marts and returns rows."""

import re
from importlib import resources

import duckdb
import pytest

from clv_platform.marts.publish import open_snapshot
from test_marts import build_demo_warehouse, materialize_marts

SCORE_COLUMNS = [
    "customer_id", "email", "predicted_clv", "p_alive", "expected_purchases", "predicted_next_purchase_date",
    "p_purchase_30d", "rfm_segment", "lifecycle_stage", "cluster_id", "clv_rank", "clv_percentile", "clv_tier",
    "model_version", "scored_at",
]

# The columns each query promises (the README lists the same).
EXPECTED_COLUMNS = {
    "top_100_customers_by_predicted_clv": [
        "clv_rank", "customer_id", "email", "predicted_clv", "p_alive", "expected_purchases",
        "predicted_next_purchase_date", "rfm_segment", "lifecycle_stage", "clv_tier", "order_count",
        "historical_revenue",
    ],
    "customer_by_email": SCORE_COLUMNS,
    "high_value_customers_at_risk": [
        "customer_id", "email", "predicted_clv", "p_alive", "lifecycle_stage", "rfm_segment", "last_order_date",
        "historical_revenue", "can_receive_email_marketing",
    ],
    "customers_expected_to_buy_next_week": [
        "customer_id", "email", "predicted_next_purchase_date", "p_purchase_30d", "predicted_clv", "rfm_segment",
    ],
    "segment_sizes_over_time": ["scoring_date", "rfm_segment", "customers", "customer_share", "total_predicted_clv"],
    "revenue_last_12_months": [
        "month", "revenue", "orders", "average_order_value", "new_customers", "returning_customers",
        "new_customer_revenue", "returning_customer_revenue", "guest_revenue",
    ],
    "cohort_retention_matrix": ["cohort_month", "cohort_customers", "0", "1", "2", "3", "4", "5", "6"],
    "revenue_forecast_next_12_months": [
        "period", "period_start", "period_end", "existing_revenue", "new_revenue", "total_revenue",
        "total_revenue_low", "total_revenue_high", "expected_new_customers",
    ],
    "revenue_forecast_totals": ["period", "total_revenue", "total_revenue_low", "total_revenue_high", "existing_share"],
    "channels_by_customer_value": [
        "channel", "customers", "first_order_value", "repeat_rate_90d", "mean_predicted_clv", "total_predicted_clv",
        "share_alive",
    ],
    "campaigns_and_codes_by_value": [
        "channel", "campaign", "discount_code", "customers", "customers_per_month", "first_order_value",
        "repeat_rate_90d", "mean_predicted_clv", "mean_predicted_clv_low", "mean_predicted_clv_high", "share_alive",
    ],
    "new_customers_per_month_by_channel": ["acquisition_month", "channel", "customers", "first_order_value"],
}


def cookbook() -> dict[str, str]:
    """The cookbook's queries by name (each starts at a `-- name: ...` line)."""
    text = resources.files("clv_platform.marts").joinpath("cookbook.sql").read_text(encoding="utf-8")
    parts = re.split(r"^-- name:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    return {name: sql.strip().rstrip(";") for name, sql in zip(parts[1::2], parts[2::2])}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cookbook")
    mp = pytest.MonkeyPatch()
    mp.delenv("CLV_AS_OF", raising=False)
    mp.setenv("CLV_DATA_DIR", str(tmp))
    mp.setenv("CLV_ANALYTICS_PATH", str(tmp / "analytics.duckdb"))
    mp.setenv("CLV_EXPORT_DIR", str(tmp / "exports"))
    build_demo_warehouse(tmp / "clv.duckdb")
    assert materialize_marts(tmp / "clv.duckdb").success
    yield tmp / "analytics.duckdb"
    mp.undo()


def test_cookbook_lists_the_documented_queries():
    assert list(cookbook()) == list(EXPECTED_COLUMNS)


@pytest.mark.parametrize("name", list(EXPECTED_COLUMNS))
def test_cookbook_query_returns_rows(snapshot, name):
    sql = cookbook()[name]
    with open_snapshot(snapshot) as conn:
        if name == "customer_by_email":
            email = conn.execute("select email from marts.customer_scores where clv_rank = 7").fetchone()[0]
            assert "jane.doe@example.com" in sql
            sql = sql.replace("jane.doe@example.com", f"  {email.upper()} ")
        result = conn.execute(sql)
        columns = [d[0] for d in result.description]
        rows = result.fetchall()
    assert columns[: len(EXPECTED_COLUMNS[name])] == EXPECTED_COLUMNS[name]
    assert rows, f"{name} returned no rows"
    if name == "top_100_customers_by_predicted_clv":
        assert [r[0] for r in rows] == list(range(1, 101))
    if name == "customer_by_email":
        assert len(rows) == 1 and rows[0][columns.index("clv_rank")] == 7
    if name == "revenue_forecast_next_12_months":
        assert len(rows) == 12
    if name == "revenue_forecast_totals":
        assert [r[0] for r in rows] == ["30d", "90d", "365d"]
    if name == "customers_expected_to_buy_next_week":
        dates = {r[2] for r in rows}
        assert (max(dates) - min(dates)).days <= 6


def test_snapshot_is_read_only(snapshot):
    with open_snapshot(snapshot) as conn, pytest.raises(duckdb.Error):
        conn.execute("delete from marts.customer_scores")
