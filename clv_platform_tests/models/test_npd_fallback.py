"""The fallbacks of a store too short to train on: the BTYD next-purchase model (its curve for every
BTYD family, the date contract on it, its registration) and the lifecycle rule without repeat buyers."""

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from scipy import integrate

from clv_platform.models import btyd, lifecycle, npd, registry, segments
from clv_platform.models.npd_assets import (is_btyd_fallback, load_latest_npd_model, npd_scores, save_npd_fallback,
                                            save_npd_model)

CUTOFF = date(2026, 3, 1)
PARETO = {"r": 0.55, "alpha": 10.58, "s": 0.606, "beta": 11.67}  # CDNOW's published Pareto/NBD (weeks)
MBG = {"r": 0.52, "alpha": 6.2, "a": 0.89, "b": 2.9}


def _model(family: str, params: dict) -> btyd.TransactionModel:
    fitter = {btyd.PARETO_NBD: ParetoNBDFitter, btyd.MBGNBD: ModifiedBetaGeoFitter, btyd.BGNBD: BetaGeoFitter}[family]()
    fitter.params_ = pd.Series(params)
    return btyd.TransactionModel(fitter, family)


def _pareto_by_quad(x: float, T: float, t: float, params: dict = PARETO) -> float:
    """P(a purchase within t | alive) under Pareto/NBD, integrated over the two Gamma posteriors
    directly: E over lambda ~ Gamma(r + x, alpha + T), mu ~ Gamma(s, beta + T) of the chance that the
    purchase clock rings before both the dropout clock and t, lambda / (lambda + mu) (1 - e^-(lambda+mu) t)."""
    import math

    def gamma_pdf(v, shape, rate):
        return math.exp(shape * math.log(rate) + (shape - 1) * math.log(v) - rate * v - math.lgamma(shape)) if v > 0 else 0.0

    k, a, s, b = params["r"] + x, params["alpha"] + T, params["s"], params["beta"] + T

    def inner(m):
        return integrate.quad(lambda l: l / (l + m) * -math.expm1(-(l + m) * t) * gamma_pdf(l, k, a), 0, np.inf,
                              epsabs=1e-10)[0] * gamma_pdf(m, s, b)

    return integrate.quad(inner, 0, np.inf, epsabs=1e-9, limit=100)[0]


@pytest.mark.parametrize("x, T, t", [(0.0, 0.5, 30 / 7), (12.0, 60.0, 90 / 7)])
def test_pareto_purchase_curve_is_the_double_posterior_integral(x, T, t):
    model = _model(btyd.PARETO_NBD, PARETO)
    got = float(model.purchase_within_if_alive(t, x, T)[0])
    assert got == pytest.approx(_pareto_by_quad(x, T, t), abs=1e-7)


def test_pareto_without_dropout_is_the_gamma_poisson_closed_form():
    model = _model(btyd.PARETO_NBD, {**PARETO, "s": 1e-12})
    x, T = np.array([0.0, 3.0, 10.0]), np.array([1.0, 25.0, 52.0])
    expected = 1.0 - ((PARETO["alpha"] + T) / (PARETO["alpha"] + T + 13.0)) ** (PARETO["r"] + x)
    np.testing.assert_allclose(model.purchase_within_if_alive(13.0, x, T), expected, rtol=1e-10)


def test_pareto_purchase_probability_agrees_with_simulated_customers():
    model = _model(btyd.PARETO_NBD, PARETO)
    x, tx, T = np.array([0.0, 4.0]), np.array([0.0, 18.0]), np.array([10.0, 20.0])
    draws = model.sample_purchases(30 / 7, x, tx, T, 200_000, np.random.default_rng(7))
    simulated = (draws > 0).mean(axis=1)
    se = np.sqrt(simulated * (1 - simulated) / 200_000)
    assert np.all(np.abs(model.probability_of_purchase_within(30 / 7, x, tx, T) - simulated) < 4 * se)


@pytest.mark.parametrize("family, params", [(btyd.PARETO_NBD, PARETO), (btyd.MBGNBD, MBG)])
def test_the_median_given_a_purchase_within_the_window_halves_the_curve(family, params):
    model = _model(family, params)
    x, T = np.array([0.0, 1.0, 6.0, 0.0]), np.array([0.2, 9.0, 40.0, 9.0])
    median = model.median_purchase_time_within(90 / 7, x, T)
    assert np.all((median > 0) & (median < 90 / 7))
    np.testing.assert_allclose(model.purchase_within_if_alive(median, x, T),
                               model.purchase_within_if_alive(90 / 7, x, T) / 2, rtol=1e-8)


def test_the_fallback_matches_the_bgnbd_timing_it_generalizes():
    params = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series(params)
    frame = pd.DataFrame({"frequency": [0.0, 2.0, 7.0], "recency_weeks": [0.0, 30.43, 35.0],
                          "T_weeks": [30.0, 38.86, 36.0]})
    timing = npd.BTYDTiming(fitter).predict(frame, cutoff=CUTOFF, within_days=90)
    fallback = npd.BTYDNextPurchase(_model(btyd.BGNBD, params)).predict(frame, cutoff=CUTOFF, within_days=90)
    for column in ("p_purchase_7d", "p_purchase_30d", "p_purchase_90d", "days_to_next_given_purchase"):
        np.testing.assert_allclose(fallback[column], timing[column], rtol=1e-12)
    assert fallback["days_to_next"].isna().all()  # the unconditional median is not served


def test_the_fallback_serves_the_date_contract_for_a_hand_checked_customer():
    model = _model(btyd.MBGNBD, MBG)
    # a recent repeat buyer (x = 3, last purchase 1 week ago, first 10 weeks ago) and a lapsed one-time buyer
    frame = pd.DataFrame({"customer_id": ["recent", "lapsed"], "frequency": [3.0, 0.0],
                          "recency_weeks": [9.0, 0.0], "T_weeks": [10.0, 60.0]})
    out = npd_scores(npd.BTYDNextPurchase(model), frame, CUTOFF)
    r, alpha, a, b = MBG["r"], MBG["alpha"], MBG["a"], MBG["b"]
    # MBG/NBD P(alive) and the Gamma(r + x, alpha + T) curve over 30 days, by hand
    p_alive = 1.0 / (1.0 + a / (b + 3.0) * ((alpha + 10.0) / (alpha + 9.0)) ** (r + 3.0))
    p30 = p_alive * (1.0 - ((alpha + 10.0) / (alpha + 10.0 + 30 / 7)) ** (r + 3.0))
    assert out.loc[0, "p_purchase_30d"] == pytest.approx(p30, rel=1e-10)
    # by hand: p_alive = 1 / (1 + 0.89 / 5.9 x (16.2 / 15.2)^3.52) = 0.8412; 1 - (16.2 / 20.486)^3.52 = 0.5623
    assert out.loc[0, "p_purchase_30d"] == pytest.approx(0.8412 * 0.5623, abs=1e-4)
    p90 = p_alive * (1.0 - ((alpha + 10.0) / (alpha + 10.0 + 90 / 7)) ** (r + 3.0))
    assert out.loc[0, "p_purchase_90d"] == pytest.approx(p90, rel=1e-10) and p90 >= npd.DATE_MIN_PROBABILITY
    # the date: the median given a purchase within 90 days, solved by hand, rounded up to a whole day
    target = 1.0 - (1.0 - ((alpha + 10.0) / (alpha + 10.0 + 90 / 7)) ** (r + 3.0)) / 2.0
    median_days = 7.0 * (alpha + 10.0) * (target ** (-1.0 / (r + 3.0)) - 1.0)
    assert out.loc[0, "days_to_next_purchase"] == pytest.approx(median_days, rel=1e-10)
    assert out.loc[0, "predicted_next_purchase_date"] == CUTOFF + pd.Timedelta(days=int(np.ceil(median_days)))
    # the lapsed one-time buyer: probabilities, but P(90 d) under the threshold, so no date
    assert out.loc[1, "p_purchase_90d"] < npd.DATE_MIN_PROBABILITY
    assert pd.isna(out.loc[1, "days_to_next_purchase"]) and pd.isna(out.loc[1, "predicted_next_purchase_date"])
    assert (out["p_purchase_7d"] <= out["p_purchase_30d"]).all() and (out["p_purchase_30d"] <= out["p_purchase_90d"]).all()


def test_too_little_history_is_its_own_value_error():
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(12)], "x": np.arange(12.0),
                          "days_to_next_purchase": [np.nan] * 12})
    with pytest.raises(npd.HistoryTooShort, match="every row is censored"):
        npd.NPDModel().fit(frame, ["x"], horizon_days=90)
    with pytest.raises(npd.HistoryTooShort, match="need at least 10 training rows, got 3"):
        npd.NPDModel().fit(frame.head(3), ["x"], horizon_days=90)
    assert issubclass(npd.HistoryTooShort, ValueError)


def _trained_npd() -> npd.NPDModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(60)], "x": rng.normal(size=60),
                          "days_to_next_purchase": np.where(rng.random(60) < 0.5, rng.integers(1, 90, 60), np.nan)})
    return npd.NPDModel(distribution=npd.EXTREME, scale=1.0, max_rounds=5, n_threads=1).fit(frame, ["x"], horizon_days=90)


def test_the_fallback_is_registered_only_when_nothing_is_served(data_env):
    meta = {"cutoff": str(CUTOFF), "training_horizon_days": 90, "serving_reason": "history too short to train: x"}
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        first = registry.short_history_decision(conn, registry.NPD_MODEL_NAME)
        assert first["register"] and first["served_version"] is None
        version = save_npd_fallback(meta, conn, register=first["register"])
        model, sidecar = load_latest_npd_model(conn)
        assert model is None and is_btyd_fallback(sidecar) and sidecar["model_version"] == version
        assert sidecar["booster_file"] is None and sidecar["serving_reason"] == "history too short to train: x"
        row = registry.latest_registered(conn, registry.NPD_MODEL_NAME)
        assert row["objective"] == npd.BTYD_ONLY and row["path"].endswith(".json") and row["n_train"] == 0
        # a trained model then served is never replaced by a later fallback
        trained = save_npd_model(_trained_npd(), {"cutoff": str(CUTOFF), "training_horizon_days": 90}, conn=conn)
        again = registry.short_history_decision(conn, registry.NPD_MODEL_NAME)
        assert not again["register"] and again["served_version"] == trained
        model, sidecar = load_latest_npd_model(conn)
    assert isinstance(model, npd.NPDModel) and sidecar["serves"] == "aft"


def _lifecycle_frame(repeat: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "T_days": [30.0, 200.0, 400.0, 300.0],
        "days_since_last_order": [30.0, 200.0, 400.0, 100.0],
        "mean_interpurchase_days": [np.nan, np.nan, np.nan, 40.0 if repeat else np.nan],
        "frequency": [0, 0, 0, 5 if repeat else 0],
    })


def test_lifecycle_without_repeat_buyers_rests_on_tenure_and_p_alive():
    config = segments.load_config()
    frame = _lifecycle_frame(repeat=False)
    cadence = lifecycle.population_cadence(frame, config)
    assert np.isnan(cadence.population_interval_)
    assert lifecycle.cadence_ratio(frame, config, cadence).isna().all()
    # without p_alive nothing marks a one-time buyer overdue; with it, p_alive decides
    assert lifecycle.lifecycle_stages(frame, config).tolist() == ["new", "active", "active", "active"]
    stages = lifecycle.lifecycle_stages(frame, config, p_alive=[0.9, 0.1, 0.4, 0.8])
    assert stages.tolist() == ["new", "churned", "at_risk", "active"]
    assert lifecycle.cadence_rule(cadence, 0, config).startswith("no population interval: 0 repeat buyers")


def test_lifecycle_below_the_repeat_buyer_minimum_keeps_a_repeat_buyers_own_cadence():
    config = segments.load_config()
    config["lifecycle"]["cadence_min_repeat_buyers"] = 2
    frame = _lifecycle_frame(repeat=True)
    cadence = lifecycle.population_cadence(frame, config)
    assert np.isnan(cadence.population_interval_)
    ratio = lifecycle.cadence_ratio(frame, config, cadence)
    assert ratio.iloc[:3].isna().all() and ratio.iloc[3] == pytest.approx(100.0 / 40.0)
    assert lifecycle.lifecycle_stages(frame, config, cadence=cadence).tolist() == ["new", "active", "active", "at_risk"]
    # at the shipped minimum of one the same store pools its one repeat buyer's interval (40 days)
    pooled = lifecycle.population_cadence(frame, segments.load_config())
    assert pooled.population_interval_ == pytest.approx(40.0)
    assert lifecycle.lifecycle_stages(frame, segments.load_config()).tolist() == ["new", "churned", "churned", "at_risk"]


def _holdout(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """Features at C - 90 of a simulated store (weekly-ish buyers, some gone) with the days to each
    customer's next purchase in the 90 days after (NaN: none), as a training window holds them."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(7, 300, n)
    frequency = rng.poisson(T / 60.0)
    span = np.where(frequency > 0, T * rng.uniform(0.3, 1.0, n), 0.0)
    gone = rng.random(n) < 0.4
    wait = rng.exponential(np.where(frequency > 0, T / (frequency + 1), 120.0))
    days = np.where(~gone & (wait <= 90), np.maximum(np.ceil(wait), 1.0), np.nan)
    return pd.DataFrame({"customer_id": [f"c{i:04d}" for i in range(n)], "frequency": frequency,
                         "first_to_last_order_days": span, "T_days": T, "monetary": rng.gamma(2.0, 30.0, n),
                         "days_to_next_purchase": days, "feature_cutoff": pd.Timestamp("2026-01-01")})


def test_a_trained_candidate_is_compared_with_a_served_fallback_on_the_same_window(data_env, monkeypatch):
    from clv_platform.models.npd_assets import npd_registration_gate
    from clv_platform.models.npd_backtest import fallback_metrics
    from clv_platform_tests.cheap_config import cheap_clv_config, use_clv_config

    # MBG/NBD: the comparison is what is tested, not the auto family search (a minute of Pareto/NBD here)
    use_clv_config(monkeypatch, cheap_clv_config(data_env))
    holdout = _holdout()
    served = fallback_metrics(holdout, 90)
    assert 0.5 < served["auc_30d"] <= 1.0 and 0.0 < served["brier_30d"] < 0.25
    meta = {"cutoff": str(CUTOFF), "training_horizon_days": 90, "serving_reason": "history too short to train: x"}
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        version = save_npd_fallback(meta, conn, register=True)
        worse = npd_registration_gate(conn, holdout, {"auc_30d": 0.5, "brier_30d": 0.3}, 90)
        better = npd_registration_gate(conn, holdout, {"auc_30d": served["auc_30d"] + 0.05,
                                                       "brier_30d": served["brier_30d"] * 0.9}, 90)
    assert not worse["register"] and worse["served_version"] == version and "auc_30d" in worse["reason"]
    assert better["register"] and better["served_metrics"]["auc_30d"] == pytest.approx(served["auc_30d"])


def test_a_model_file_without_a_registry_row_is_never_served(data_env):
    """The next-purchase model was served from the newest file in the models folder when the registry
    had no row (a database rebuilt beside an old models folder; a candidate the gate refused while
    nothing was registered), unlike the CLV model, which refuses: both now serve only a registered run."""
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        save_npd_model(_trained_npd(), {"cutoff": str(CUTOFF), "training_horizon_days": 90})  # a file, no row
        refused = save_npd_model(_trained_npd(), {"cutoff": str(CUTOFF), "training_horizon_days": 90}, conn=conn,
                                 register=False)
        with pytest.raises(LookupError, match="no registered model named 'npd_aft' in ml.model_runs: train one first"):
            load_latest_npd_model(conn)
        served = save_npd_model(_trained_npd(), {"cutoff": str(CUTOFF), "training_horizon_days": 90}, conn=conn)
        later = save_npd_model(_trained_npd(), {"cutoff": str(CUTOFF), "training_horizon_days": 90}, conn=conn,
                               register=False)
        model, sidecar = load_latest_npd_model(conn)
    assert isinstance(model, npd.NPDModel) and sidecar["model_version"] == served
    assert len({refused, served, later}) == 3


def test_a_model_trained_over_a_stretch_without_orders_has_not_earned_its_place():
    """`earns_its_place` with a stretch the store's rate cannot explain inside the model's windows:
    the fallback is served whatever the metrics, and the reason names the stretch."""

    from clv_platform.models.npd_backtest import earns_its_place
    from clv_platform.transforms.order_gaps import OrderGap

    gap = OrderGap(date(2024, 3, 1), date(2024, 3, 31), 31, 12.0, orders_after=900, last_day=date(2024, 6, 30))
    better = {"auc_30d": 0.8, "brier_30d": 0.10}
    baseline = {"auc_30d": 0.7, "brier_30d": 0.12}
    assert earns_its_place(better, baseline)["earned"]
    verdict = earns_its_place(better, baseline, gaps=[gap])
    assert not verdict["earned"] and verdict["reason"].startswith(
        "the trained model's windows hold no orders from 2024-03-01 to 2024-03-31 (31 days) where the store had "
        "12.0 a day around it")


def _invoicing_calendar(cutoff: date):
    """The order calendar of a wholesaler invoicing on the 1st of each month, seen up to ``cutoff``."""
    from clv_platform.transforms.order_gaps import stretches_in_daily_counts
    days = list(pd.date_range("2024-01-01", cutoff, freq="MS").date)
    return stretches_in_daily_counts(days, [40.0] * len(days)).calendar_ahead(cutoff)


def test_on_an_invoicing_stores_calendar_the_fallback_reads_its_chances_and_dates_on_invoice_days():
    """As of 1 March, invoicing on the 1st of each month: no order can come in the next 7 days (the
    fallback's curve said more than 0.10) nor in the next 30 (2-31 March hold no 1st); the 90 days to
    30 May hold 1 April and 1 May, two average months of the curve; the date is the invoice day on
    which the median given a purchase within them falls. As of 25 February the week holds 1 March:
    one month of the curve."""
    model = _model(btyd.MBGNBD, MBG)
    frame = pd.DataFrame({"customer_id": ["recent"], "frequency": [3.0], "recency_weeks": [9.0], "T_weeks": [10.0]})
    plain = npd_scores(npd.BTYDNextPurchase(model), frame, CUTOFF)
    calendar = _invoicing_calendar(CUTOFF)
    assert (calendar.month_day, calendar.open_days) == (1, 1)
    out = npd_scores(npd.BTYDNextPurchase(model), frame, CUTOFF, calendar=calendar)
    month = 365.2425 / 12
    curve = lambda days: float(model.probability_of_purchase_within(days / 7.0, 3.0, 9.0, 10.0)[0])  # noqa: E731
    assert plain.loc[0, "p_purchase_7d"] == pytest.approx(curve(7)) and plain.loc[0, "p_purchase_7d"] > 0.1
    assert out.loc[0, "p_purchase_7d"] == pytest.approx(0.0, abs=1e-9)
    assert out.loc[0, "p_purchase_30d"] == pytest.approx(0.0, abs=1e-9)  # 2-31 March: no 1st
    assert out.loc[0, "p_purchase_90d"] == pytest.approx(curve(2 * month), rel=1e-9)
    # the served date is an invoice day: 1 April or 1 May
    assert out.loc[0, "predicted_next_purchase_date"] in (date(2026, 4, 1), date(2026, 5, 1))
    assert plain.loc[0, "predicted_next_purchase_date"] not in (date(2026, 4, 1), date(2026, 5, 1))
    # the median given a purchase within the 90 days' two months: more than half of it by 1 April
    half = curve(2 * month) / 2
    assert out.loc[0, "predicted_next_purchase_date"] == (date(2026, 4, 1) if curve(month) >= half else date(2026, 5, 1))
    # a week that holds an invoice day holds one month of the curve
    before = date(2026, 2, 25)
    week = npd_scores(npd.BTYDNextPurchase(model), frame, before, calendar=_invoicing_calendar(before))
    assert week.loc[0, "p_purchase_7d"] == pytest.approx(curve(month), rel=1e-9)
    assert week.loc[0, "predicted_next_purchase_date"] == date(2026, 3, 1)


def _invoicing_store(accounts: int = 300, seed: int = 4) -> pd.DataFrame:
    """Accounts invoiced on the 1st of a month (a chance of 0.2-0.6 each month while they last)."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2022-01-01", "2024-12-01", freq="MS")
    rows = []
    for a in range(accounts):
        first = int(rng.integers(0, len(months) - 6))
        chance, last = float(rng.uniform(0.2, 0.6)), first + rng.exponential(24)
        rows += [(f"A{a}", months[m], float(rng.gamma(4.0, 50.0))) for m in range(first, len(months))
                 if m == first or (m <= last and rng.random() < chance)]
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def test_the_backtest_reads_an_invoicing_stores_btyd_curves_on_its_order_days():
    """Backtested from 10 July, the week to 17 July holds no invoice day and nobody buys in it: the
    BTYD timing baseline and the fallback now say so (0, they said about 0.05 each), the naive
    cadence too; the 30 days to 9 August hold 1 August, where the buyers are. The trained model is
    left as it learned (its windows start a whole number of months back), and the backtest says which
    calendar it read."""
    from clv_platform.models.npd_backtest import run_npd_backtest

    tx = _invoicing_store()
    cutoff = pd.Timestamp("2024-07-10")
    result = run_npd_backtest(tx, cutoff, pd.Timestamp("2024-12-01"), aft=npd.NPDModel(n_threads=1))
    assert result["order_calendar"] == ("orders on 1 day from day 1 of every month: next-purchase chances and dates "
                                        "are read on those days")
    models = result["models"]
    assert (models["btyd"]["positives_7d"], models["btyd"]["positives_30d"]) == (0, 61)
    for name in ("btyd", "btyd_fallback", "naive"):
        assert models[name]["mean_p_7d"] == pytest.approx(0.0, abs=1e-9), name
    # the month's chance falls on 1 August: 53 and 51 expected buyers of the 61 who bought
    for name in ("btyd", "btyd_fallback"):
        assert 0.8 * 61 < 300 * models[name]["mean_p_30d"] < 1.2 * 61, name
    assert models["aft"]["mean_p_7d"] > 1e-3  # its own curve, not read on the calendar
