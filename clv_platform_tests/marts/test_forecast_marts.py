"""marts/revenue_forecast as an asset: the scores' predicted spend spread over the next year."""

from datetime import date

import pandas as pd
import pytest


def test_revenue_forecast_asset_spreads_the_scores_predicted_spend(tmp_path, monkeypatch):
    """marts/revenue_forecast on staging of a demo store with fixture scores carrying predicted_spend."""
    import dagster as dg
    import duckdb
    from dagster_duckdb import DuckDBResource

    from clv_platform.marts.forecast_assets import revenue_forecast
    from test_marts import build_demo_warehouse

    monkeypatch.setenv("CLV_AS_OF", "2026-10-31")  # a month end: the twelve months are the next 365 days
    database = tmp_path / "clv.duckdb"
    build_demo_warehouse(database)
    with duckdb.connect(str(database)) as conn:
        conn.execute("create or replace table scores.customer_clv as "
                     "select *, predicted_clv * 1.25 as predicted_spend from scores.customer_clv")
    result = dg.materialize([revenue_forecast], resources={"duckdb": DuckDBResource(database=str(database))},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    with duckdb.connect(str(database), read_only=True) as conn:
        table = conn.execute("select * from marts.revenue_forecast").df().set_index("period")
        predicted = conn.execute("select sum(predicted_spend) from scores.customer_clv").fetchone()[0]
        cutoff = conn.execute("select max(order_date) from staging.orders").fetchone()[0]
        comments = dict(conn.execute("select column_name, comment from duckdb_columns() "
                                     "where table_name = 'revenue_forecast'").fetchall())
    assert len(table) == 15 and (pd.to_datetime(table["cutoff"]).dt.date == date(2026, 10, 31)).all()
    assert (table["per_customer_source"] == "scores.customer_clv.predicted_spend").all()
    assert table.loc["365d", "existing_revenue"] == pytest.approx(predicted, rel=1e-9)
    months = table[table["period_kind"] == "month"]
    # the demo ends the day before CLV_AS_OF (10-30 UTC); its order days are Los Angeles days
    assert cutoff == date(2026, 10, 29) and months["existing_revenue"].sum() == pytest.approx(predicted, rel=1e-9)
    assert (table["total_revenue"] == table["existing_revenue"] + table["new_revenue"]).all()
    # a 295-customer store: its one rehearsal (scale ~0.14 per sqrt(month), taken as a t(0.9, 1) draw)
    # makes the far months wide; their lower bounds stay above 0 (a normal interval floored them at 0)
    assert (table["total_revenue_low"] > 0).all() and (table["total_revenue_low"] <= table["total_revenue"]).all()
    assert table.loc["M01", "total_revenue_low"] > 0.5 * table.loc["M01", "total_revenue"]
    # symmetric in log space about the forecast: high / forecast = forecast / low
    assert (table["total_revenue_high"] / table["total_revenue"]).to_numpy() == pytest.approx(
        (table["total_revenue"] / table["total_revenue_low"]).to_numpy(), rel=1e-9)
    assert (table["total_revenue_high"] > table["total_revenue"]).all()
    assert table.loc["M01", "total_revenue_high"] < 1.5 * table.loc["M01", "total_revenue"]
    assert (table["new_revenue"] > 0).all() and table.loc["M01", "expected_new_customers"] > 0
    assert "spread over time" in comments["existing_revenue"]
    events = {e.asset_key: e.materialization for e in result.get_asset_materialization_events()}
    # the first forecast on this store fits its seasonality and logs the stored fit
    assert events[dg.AssetKey(["ml", "stored_fits"])].metadata["component"].value == "revenue_forecast"
    metadata = events[dg.AssetKey(["marts", "revenue_forecast"])].metadata
    assert "| month | actual | forecast" in metadata["forecast_vs_actuals"].value
    assert metadata["chart_vega_lite"].value["layer"]
    assert metadata["365d_total_revenue"].value == pytest.approx(table.loc["365d", "total_revenue"])
    assert metadata["rehearsal_cutoff"].value == "2026-04-30" and metadata["rehearsal_existing_scale"].value > 0
    assert "t(0.9, 1) 3.078" in metadata["existing_interval_rule"].value
