"""marts/revenue_forecast at night: the stored seasonality and rehearsal errors are reused, the rest
is recomputed at the cutoff, and the result equals the whole pandas forecast with the same pieces.

The first run refits in SQL (``marts.forecast_refit``); the pandas forecast below fits the
seasonality and the rehearsal from every order, so the comparison (1e-9 relative) also holds the
SQL refit to the pandas path on the forecast table (the pieces: test_forecast_refit_sql)."""

from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform_tests.dagster_events import materialization_metadata


def _fit_metadata(result):
    return materialization_metadata(result, ("marts", "revenue_forecast"))


def _table(database):
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute("select * from marts.revenue_forecast order by period").df()


def test_nightly_forecast_reuses_the_stored_fit_and_equals_the_full_forecast(tmp_path, monkeypatch):
    from test_marts import build_demo_warehouse

    from clv_platform.forecast import revenue
    from clv_platform.marts.forecast_assets import revenue_forecast, store_transactions
    from clv_platform.models import clv, stored_fits
    from clv_platform.models.clv_assets import btyd_scores
    from clv_platform.transforms.cutoff import scoring_cutoff
    from clv_platform.transforms.features import materialize_features

    monkeypatch.setenv("CLV_AS_OF", "2026-10-31")
    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    database = tmp_path / "clv.duckdb"
    build_demo_warehouse(database, customers=600)
    with duckdb.connect(str(database)) as conn:
        materialize_features(conn, scoring_cutoff(conn))
        conn.execute("create or replace table scores.customer_clv as "
                     "select *, predicted_clv * 1.25 as predicted_spend from scores.customer_clv")
    resources = {"duckdb": DuckDBResource(database=str(database))}

    first = dg.materialize([btyd_scores, revenue_forecast], resources=resources, instance=dg.DagsterInstance.ephemeral())
    meta = _fit_metadata(first)
    assert meta["fit"] == "refitted" and meta["fit_reason"] == "no stored fit"
    assert meta["btyd_model_source"].startswith("stored BTYD fit of")
    refit_table = _table(database)

    second = _fit_metadata(dg.materialize([revenue_forecast], resources=resources,
                                          instance=dg.DagsterInstance.ephemeral()))
    assert second["fit"] == "reused" and second["fit_age_days"] == 0
    reused_table = _table(database)
    pd.testing.assert_frame_equal(reused_table, refit_table, rtol=1e-12)

    # the same forecast computed the old way: every order in pandas, seasonality and rehearsal fitted
    with duckdb.connect(str(database), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        model = stored_fits.btyd_from_params(stored_fits.load(conn, stored_fits.BTYD).params)
        features = conn.execute("select customer_id, frequency, recency_weeks * 7 as first_to_last_order_days, "
                                "T_weeks * 7 as T_days, monetary from ml.btyd_scores").df()
        scores = conn.execute("select customer_id, predicted_spend from scores.customer_clv").df()
        transactions = store_transactions(conn)
    expected = revenue.forecast_revenue(
        transactions, cutoff, model=model, summary=clv.btyd_summary(features),
        predicted_spend=scores.set_index("customer_id")["predicted_spend"], horizon_days=365,
    ).table.set_index("period")
    got = reused_table.set_index("period")
    for column in ("total_revenue", "total_revenue_low", "total_revenue_high", "existing_revenue", "new_revenue",
                   "expected_new_customers"):
        assert got[column].to_numpy() == pytest.approx(expected.loc[got.index, column].to_numpy(), rel=1e-9), column
    assert (got["total_revenue"] > 0).all()

    # a stored forecast fit older than refit_after_days is refitted (and replaced)
    with duckdb.connect(str(database)) as conn:
        conn.execute("update ml.stored_fits set fit_cutoff = ? where component = 'revenue_forecast'",
                     [cutoff - timedelta(days=9)])
    third = _fit_metadata(dg.materialize([revenue_forecast], resources=resources,
                                         instance=dg.DagsterInstance.ephemeral()))
    assert third["fit"] == "refitted" and "9 days old" in third["fit_reason"]
    with duckdb.connect(str(database), read_only=True) as conn:
        assert stored_fits.load(conn, stored_fits.REVENUE_FORECAST).fit_cutoff == cutoff
    pd.testing.assert_frame_equal(_table(database), refit_table, rtol=1e-12)
