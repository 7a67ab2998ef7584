"""A seasonal store: customers who buy every December, scored at the end of October.

The next-purchase model trained on the latest 90-day window only (August-October, where a
December buyer never buys) said those customers would not buy in November-January, and its
validation on that same window could not tell. Now it also trains on the coming season of a year
ago with the feature of what each customer bought then (``orders_next_90d_last_year``), and a model
that predicted that season better beyond noise is served even where it loses on the latest window.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models.frames import load_staging
from clv_platform.models.npd import NPDModel
from clv_platform.models.npd_backtest import (FALLBACK, AFT, earns_its_place, run_npd_backtest, season_frames,
                                              season_window_end)
from clv_platform.transforms import features

CUTOFF = pd.Timestamp("2023-10-31")


def _gift_store(n: int = 900, seed: int = 11) -> pd.DataFrame:
    """Two thirds buy one gift around 10 December each year from their first year on (a fifth stop
    each year); a third buy on exponential gaps of 30-150 days all year (until January 2025: the
    files store below sees them until 2024-10-31)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        if rng.random() < 2 / 3:
            year = int(rng.integers(2020, 2024))
            while year <= 2024:
                day = pd.Timestamp(f"{year}-12-10") + pd.Timedelta(days=int(rng.integers(-12, 12)))
                rows.append((f"G{c}", day, round(float(rng.lognormal(4.2, 0.4)), 2)))
                if rng.random() < 0.2:
                    break
                year += 1
        else:
            t = pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(rng.integers(0, 1000)))
            gap = rng.uniform(30, 150)
            while t <= pd.Timestamp("2025-01-31"):
                rows.append((f"A{c}", t, round(float(rng.lognormal(3.8, 0.5)), 2)))
                t = t + pd.Timedelta(days=max(1, int(rng.exponential(gap))))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def test_last_years_coming_season_is_a_point_in_time_feature():
    """Orders and net spend in (C - 365, C - 275]: null for a customer who was not one a year ago."""
    tx = pd.DataFrame({
        "customer_id": ["gift", "gift", "gift", "young", "spring", "spring"],
        "order_date": pd.to_datetime(["2021-12-01", "2022-12-10", "2023-10-01", "2023-03-01", "2022-01-05",
                                      "2023-02-01"]),
        "amount": [50.0, 80.0, 20.0, 30.0, 40.0, 60.0],
    })
    conn = duckdb.connect(":memory:")
    load_staging(conn, tx)
    frame = features.build_scoring_frame(conn, date(2023, 10, 31)).set_index("customer_id")
    conn.close()
    # (2022-10-31, 2023-01-29]: the gift of 2022-12-10 is in it, 2023-02-01 (C - 272) is not
    assert frame.loc["gift", "orders_next_90d_last_year"] == 1
    assert frame.loc["gift", "spend_next_90d_last_year"] == pytest.approx(80.0)
    assert frame.loc["spring", "orders_next_90d_last_year"] == 0
    assert frame.loc["spring", "spend_next_90d_last_year"] == pytest.approx(0.0)
    assert pd.isna(frame.loc["young", "orders_next_90d_last_year"])
    assert pd.isna(frame.loc["young", "spend_next_90d_last_year"])
    assert {"orders_next_90d_last_year", "spend_next_90d_last_year"} <= set(features.FEATURE_COLUMNS)


def test_the_season_window_is_the_predicted_window_a_year_earlier():
    end = date(2023, 10, 31)
    # the 90 days after C, a year earlier: (C - 365, C - 275]
    assert season_window_end(end, 90) == date(2023, 1, 29)
    # the three windows both ml/npd_model and the backtest read: the coming season a year ago, the
    # window ending a year back (the earlier window's season) and that one's own season
    assert season_frames(lambda e: e, end, 90) == (date(2023, 1, 29), date(2022, 10, 31), date(2022, 1, 29))


@pytest.fixture(scope="module")
def gift_backtest():
    tx = _gift_store()
    holdout_end = CUTOFF + pd.Timedelta(days=90)
    result = run_npd_backtest(tx, CUTOFF, holdout_end, aft=NPDModel(n_threads=1))
    window = tx[(tx["order_date"] > CUTOFF) & (tx["order_date"] <= holdout_end)]
    known = tx[tx["order_date"] <= CUTOFF]["customer_id"].unique()
    observed = float(np.isin(known, window["customer_id"].unique()).mean())
    return result, observed


def test_a_seasonal_store_gets_the_season_it_is_about_to_have(gift_backtest):
    result, observed = gift_backtest
    assert result["training_window"]["season_rows"] > 100
    aft, fallback = result["models"][AFT], result["models"][FALLBACK]
    # about half the customers buy in November-January; the model that saw last season knows it
    assert observed > 0.4
    assert abs(aft["mean_p_90d"] - observed) < 0.6 * abs(fallback["mean_p_90d"] - observed)
    assert aft["brier_90d"] < fallback["brier_90d"] - 0.05
    assert aft["auc_90d"] > fallback["auc_90d"] + 0.05


def test_a_model_that_knew_the_season_is_served(gift_backtest):
    result, _ = gift_backtest
    served = result["served"]
    season = served["validation"][AFT]
    assert season["season_validation_rows"] > 100
    assert season["season_evidence"] == 1
    assert season["season_brier_90d_gain_over_btyd"] > 1.645 * season["season_brier_90d_gain_over_btyd_se"]
    assert served["model"] == AFT and served["earned"]


def test_season_evidence_serves_only_a_model_that_loses_on_the_latest_window_beyond_noise():
    baseline = {"auc_30d": 0.80, "brier_30d": 0.05}
    losing = {"auc_30d": 0.79, "brier_30d": 0.06}
    assert not earns_its_place(losing, baseline)["earned"]
    assert not earns_its_place({**losing, "season_evidence": 0}, baseline)["earned"]
    seasonal = {**losing, "season_evidence": 1, "season_brier_90d_gain_over_btyd": 0.08,
                "season_brier_90d_gain_over_btyd_se": 0.01, "season_validation_rows": 500}
    verdict = earns_its_place(seasonal, baseline)
    assert verdict["earned"] and "coming season" in verdict["reason"]
    assert earns_its_place({"auc_30d": 0.81, "brier_30d": 0.04}, baseline)["earned"]


def test_a_store_younger_than_a_year_trains_as_before():
    """No window a year back: nothing stacked, no season validation, the latest window decides."""
    tx = _gift_store(n=400, seed=5)
    tx = tx[tx["order_date"] > pd.Timestamp("2023-01-01")]
    result = run_npd_backtest(tx, CUTOFF, CUTOFF + pd.Timedelta(days=90), aft=NPDModel(n_threads=1))
    assert result["training_window"]["season_rows"] == 0
    assert "season_evidence" not in result["served"]["validation"][AFT]


def test_a_served_fallback_gives_way_to_a_candidate_that_knew_the_season(data_env, monkeypatch):
    """The registration compares a candidate with the served model on the latest window only: a
    served BTYD fallback would refuse the seasonal model that earns_its_place chose to serve."""
    from clv_platform.models.npd_assets import npd_registration_gate, save_npd_fallback
    from clv_platform.models.npd_backtest import fallback_metrics
    from clv_platform_tests.cheap_config import cheap_clv_config, use_clv_config
    from clv_platform_tests.models.test_npd_fallback import _holdout

    use_clv_config(monkeypatch, cheap_clv_config(data_env))
    holdout = _holdout()
    served = fallback_metrics(holdout, 90)
    worse = {"auc_30d": served["auc_30d"] - 0.05, "brier_30d": served["brier_30d"] * 1.2}
    meta = {"cutoff": "2026-03-01", "training_horizon_days": 90, "serving_reason": "history too short to train: x"}
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        save_npd_fallback(meta, conn, register=True)
        refused = npd_registration_gate(conn, holdout, worse, 90)
        seasonal = npd_registration_gate(conn, holdout, {**worse, "season_evidence": 1}, 90)
    assert not refused["register"]
    assert seasonal["register"] and "coming season" in seasonal["reason"]


def test_cadence_waived_where_the_served_model_expects_a_purchase():
    """Overdue by the pooled interval, but the trained model gives P(90 d) >= 0.5: not at risk."""
    from clv_platform.models.lifecycle import lifecycle_stages

    frame = pd.DataFrame({"T_days": [400.0, 400.0, 400.0, 400.0], "days_since_last_order": [330.0] * 4,
                          "mean_interpurchase_days": [np.nan, np.nan, np.nan, 60.0], "frequency": [0, 0, 0, 1]})
    alive = np.array([0.8, 0.8, 0.3, 0.8])
    assert lifecycle_stages(frame, p_alive=alive).tolist() == ["at_risk", "at_risk", "churned", "at_risk"]
    stages = lifecycle_stages(frame, p_alive=alive, p_purchase=np.array([0.7, 0.4, 0.7, 0.5]))
    # the p_alive tests stay: at 0.3 the customer is at risk whatever the next-purchase model says
    # (churned by the cadence with a p_alive below 0.5 before)
    assert stages.tolist() == ["active", "at_risk", "at_risk", "active"]


@pytest.fixture(scope="module")
def gift_files_store(tmp_path_factory):
    """The gift store through the files pipeline, its file ending 2024-10-31 (before the season)."""
    from clv_platform_tests.cheap_config import files_store_run

    tx = _gift_store()
    known = tx[tx["order_date"] <= pd.Timestamp("2024-10-31")]
    cutoff = known["order_date"].max()  # the store's scoring cutoff: its last order day
    season = tx[(tx["order_date"] > cutoff) & (tx["order_date"] <= cutoff + pd.Timedelta(days=90))]

    def write(inbox):
        known.assign(order_date=known["order_date"].dt.date.astype(str)).to_csv(inbox / "gift.csv", index=False)

    with files_store_run(tmp_path_factory.mktemp("gift_store"), write, "USD") as store:
        store.buyers = set(season["customer_id"])
        yield store


def test_december_buyers_in_october_are_expected_and_not_at_risk(gift_files_store):
    assert gift_files_store.code == 0
    with duckdb.connect(str(gift_files_store.db), read_only=True) as conn:
        served = conn.execute("select objective from ml.model_runs where model_name = 'npd_aft' and is_registered "
                              "order by trained_at desc limit 1").fetchone()[0]
        frame = conn.execute("select customer_id, lifecycle_stage, p_purchase_90d, p_alive "
                             "from marts.customer_scores").df()
    assert served != "btyd_only"
    frame["id"] = frame["customer_id"].str.replace("import:", "", regex=False)
    frame["buys"] = frame["id"].isin(gift_files_store.buyers)
    gift = frame[frame["id"].str.startswith("G")]
    # about as many expected buyers among the December buyers as there will be
    assert gift["p_purchase_90d"].sum() == pytest.approx(gift["buys"].sum(), rel=0.35)
    by_stage = frame.groupby("lifecycle_stage")["buys"].mean()
    assert by_stage["churned"] < 0.05
    assert by_stage["active"] > 0.6
    # last December's one-time buyers are overdue by the store's pooled interval, but the served model
    # expects them: no customer it gives P(90 d) >= 0.5 is at risk or churned by the cadence
    expected = frame[(frame["p_purchase_90d"] >= 0.5) & (frame["p_alive"] >= 0.5)]
    assert len(expected) > 200 and set(expected["lifecycle_stage"]) <= {"active", "new"}
    coming = gift[gift["buys"]]
    assert (coming["lifecycle_stage"].isin(["at_risk", "churned"])).mean() < 0.1
