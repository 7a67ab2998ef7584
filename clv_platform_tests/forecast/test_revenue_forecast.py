"""The revenue forecast: existing-customer part = the per-customer expected spend, seasonality,
acquisition fit, and the backtest against the seasonal-naive baseline."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from clv_platform.forecast import backtest, revenue
from clv_platform.models import btyd, clv
from clv_platform_tests.no_churn import bgnbd_never_converges, no_churn_transactions

CUTOFF = date(2025, 10, 31)


@pytest.fixture(scope="module")
def transactions():
    return backtest.demo_transactions(date(2024, 11, 1), date(2026, 10, 31), n_customers=1500, seed=3)


@pytest.fixture(scope="module")
def fitted(transactions):
    history = transactions[transactions["order_date"] <= pd.Timestamp(CUTOFF)]
    summary = btyd.summarize(history, CUTOFF)
    return history, summary, revenue.fit_purchase_model(summary)


def test_periods_are_calendar_months_after_a_month_end():
    periods = revenue.forecast_periods(date(2025, 11, 30))
    months = [p for p in periods if p.kind == "month"]
    assert [(p.start, p.end) for p in months[:3]] == [
        (date(2025, 12, 1), date(2025, 12, 31)), (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
    ]
    assert months[-1].end == date(2026, 11, 30)
    totals = {p.label: (p.start, p.end) for p in periods if p.kind == "total"}
    assert totals["30d"] == (date(2025, 12, 1), date(2025, 12, 30))
    assert totals["365d"] == (date(2025, 12, 1), date(2026, 11, 30))
    mid = [p for p in revenue.forecast_periods(date(2025, 1, 15)) if p.kind == "month"]
    assert (mid[0].start, mid[0].end, mid[1].start) == (date(2025, 1, 16), date(2025, 2, 15), date(2025, 2, 16))


def test_existing_part_equals_the_sum_of_per_customer_expected_spend(fitted):
    history, summary, model = fitted
    rng = np.random.default_rng(0)
    predicted = pd.Series(rng.gamma(2.0, 60.0, len(summary)), index=summary.index)
    predicted.iloc[:5] = 0.0
    season = revenue.seasonal_index(history, model, CUTOFF)
    periods = revenue.forecast_periods(CUTOFF)
    table = revenue.existing_customer_forecast(summary, model, CUTOFF, periods, season, predicted).set_index("period")
    # over the horizon the spread predictions add up to the predictions themselves
    assert table.loc["365d", "revenue"] == pytest.approx(predicted.sum(), rel=1e-9)
    for days in (30, 90, 365):
        per_customer = revenue.customer_expected_spend(summary, model, CUTOFF, days, season, predicted)
        assert table.loc[f"{days}d", "revenue"] == pytest.approx(per_customer.sum(), rel=1e-9)
    # the twelve months after a month end are the 365 days (Nov 2025 .. Oct 2026)
    months = table[table["period_kind"] == "month"]
    assert months["revenue"].sum() == pytest.approx(table.loc["365d", "revenue"], rel=1e-9)
    assert (table["revenue_low"] <= table["revenue"]).all() and (table["revenue"] <= table["revenue_high"]).all()


def test_without_seasonality_it_is_lifetimes_expected_purchases_times_spend(fitted):
    """Independent of the module's code path: lifetimes' E[X(t)] per customer, scaled to the prediction."""
    _, summary, model = fitted
    flat = revenue.SeasonalIndex.flat()
    predicted = pd.Series(np.linspace(10, 500, len(summary)), index=summary.index)
    periods = revenue.forecast_periods(CUTOFF)
    table = revenue.existing_customer_forecast(summary, model, CUTOFF, periods, flat, predicted).set_index("period")
    fitter = model.transactions
    args = (summary["frequency"].to_numpy(float), summary["recency"].to_numpy(float), summary["T"].to_numpy(float))
    e90 = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(90 / 7, *args))
    e365 = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(365 / 7, *args))
    assert table.loc["90d", "revenue"] == pytest.approx(float((predicted * e90 / e365).sum()), rel=1e-9)
    # without per-customer predictions the spend is BTYD purchases x Gamma-Gamma order value
    plain = revenue.existing_customer_forecast(summary, model, CUTOFF, periods, flat).set_index("period")
    aov = model.expected_average_order_value(summary)
    assert plain.loc["365d", "revenue"] == pytest.approx(float((e365 * aov).sum()), rel=1e-9)


def test_seasonal_index_finds_the_demo_stores_black_friday_peak():
    tx = backtest.demo_transactions(date(2023, 11, 1), date(2025, 10, 31), n_customers=3000, seed=8)
    summary = btyd.summarize(tx, date(2025, 10, 31))
    model = revenue.fit_purchase_model(summary)
    season = revenue.seasonal_index(tx, model, date(2025, 10, 31))
    assert season.index.mean() == pytest.approx(1.0)
    # the demo's yearly intensity is 1 + 0.15 cos(2 pi (t - Nov 28) / year): high Nov-Dec, low May-Jun
    assert season.index[[10, 11]].mean() > 1.05 and season.index[[4, 5]].mean() < 0.95
    assert season.months_used >= 20


def test_seasonal_index_resolves_an_autumn_ramp_with_more_harmonics():
    from benchmarks.awkward_stores import HOLIDAY_MONTHS, holiday

    # intensity 1.35, 1.5, 1.75 from September to November, 0.75 in January and February: one
    # harmonic spread the ramp into a hump of about 1.2 peaking in September
    tx = holiday(np.random.default_rng(14))
    tx = tx[tx["amount"] > 0].assign(order_date=lambda f: pd.to_datetime(f["order_date"]))
    cutoff = date(2011, 9, 9)
    model = revenue.fit_purchase_model(btyd.summarize(tx, cutoff))
    season = revenue.seasonal_index(tx, model, cutoff)
    truth = HOLIDAY_MONTHS / HOLIDAY_MONTHS.mean()
    assert season.index.mean() == pytest.approx(1.0)
    assert int(np.argmax(season.index)) in (9, 10) and season.index[[9, 10]].mean() > 1.35
    assert season.index[[0, 1]].mean() < 0.8
    assert np.sqrt(np.mean(np.log(season.index / truth) ** 2)) < 0.12


def test_a_month_missing_from_the_export_is_left_out_of_the_season_not_read_as_one():
    """The autumn-ramp store without February and March 2011 (a monthly file left out): those two
    months tracked near zero; with them the CLV season's F test failed at 2011-06-09 (p = 0.183) and
    the revenue forecast's monthly error from 2011-05-31 was 0.83 instead of 0.15. The tracking
    table leaves out the months the hole overlaps, and the ramp is found again."""
    from benchmarks.awkward_stores import holiday

    from clv_platform.models import seasonality

    tx = holiday(np.random.default_rng(15))
    tx = tx[tx["amount"] > 0].assign(order_date=lambda f: pd.to_datetime(f["order_date"]))
    cutoff = date(2011, 5, 31)
    holed = tx[~tx["order_date"].between("2011-02-01", "2011-03-31")]
    model = revenue.fit_purchase_model(btyd.summarize(holed, cutoff))
    table = seasonality.tracking_table(seasonality.purchase_days(holed, cutoff), model, cutoff)
    months = set(table["month"].dt.strftime("%Y-%m"))
    assert {"2011-01", "2011-04", "2011-05"} <= months and not {"2011-02", "2011-03"} & months
    whole = seasonality.tracking_table(seasonality.purchase_days(tx, cutoff), model, cutoff)
    assert len(whole) == len(table) + 2
    season = revenue.seasonal_index(holed, model, cutoff)
    assert int(np.argmax(season.index)) in (9, 10) and season.index[[9, 10]].mean() > 1.35


def test_acquisition_fit_recovers_a_known_daily_rate_and_weekday_pattern():
    rng = np.random.default_rng(1)
    days = pd.date_range("2024-01-01", "2025-12-31", freq="D")
    rate = np.where(days.dayofweek == 6, 12.0, 6.0)  # Sundays double
    counts = rng.poisson(rate)
    firsts = pd.DataFrame({
        "first_date": np.repeat(days, counts),
        "first_value": 50.0,
    })
    fit = revenue.fit_acquisition(firsts, date(2025, 12, 31), 365)
    future = pd.date_range("2026-01-01", periods=365, freq="D")
    sundays = fit.daily_mean[future.dayofweek == 6].mean()
    others = fit.daily_mean[future.dayofweek != 6].mean()
    assert sundays == pytest.approx(12.0, rel=0.1) and others == pytest.approx(6.0, rel=0.1)
    assert fit.first_order_value == 50.0 and fit.first_order_value_var == 0.0
    assert fit.dispersion == pytest.approx(1.0, abs=0.3)


def test_acquisition_fit_reads_a_stretch_without_orders_as_unobserved_days():
    """Six new customers a day for eighteen months, none in February-March 2025 (a part of the
    export missing): read as days without new customers the stretch bends the yearly terms and the
    monthly spread; named, its days weigh nothing and the fit is that of the whole file."""
    from clv_platform.transforms.order_gaps import OrderGap

    rng = np.random.default_rng(2)
    days = pd.date_range("2024-01-01", "2025-06-30", freq="D")
    counts = rng.poisson(6.0, len(days))
    firsts = pd.DataFrame({"first_date": np.repeat(days, counts), "first_value": 50.0})
    holed = firsts[~firsts["first_date"].between("2025-02-01", "2025-03-31")]
    stretch = [OrderGap(date(2025, 2, 1), date(2025, 3, 31), 59, 6.0)]
    whole = revenue.fit_acquisition(firsts, date(2025, 6, 30), 90)
    named = revenue.fit_acquisition(holed, date(2025, 6, 30), 90, stretch)
    read_as_zero = revenue.fit_acquisition(holed, date(2025, 6, 30), 90)
    assert named.daily_mean.mean() == pytest.approx(whole.daily_mean.mean(), rel=0.01)
    assert read_as_zero.daily_mean.mean() < 0.97 * whole.daily_mean.mean()
    assert named.relative_sd == whole.relative_sd == 0.0 and read_as_zero.relative_sd > 1.0
    assert named.dispersion == pytest.approx(whole.dispersion, abs=0.1) and read_as_zero.dispersion > 3.0


def test_new_customer_part_is_arrivals_times_first_value_plus_repeats(fitted):
    _, _, model = fitted
    acquisition = revenue.AcquisitionFit(
        daily_mean=np.full(400, 2.0), dispersion=1.0, relative_sd=0.0, first_order_value=40.0,
        first_order_value_var=0.0, history_days=365)
    periods = revenue.forecast_periods(CUTOFF)
    table = revenue.new_customer_forecast(acquisition, model, CUTOFF, periods, revenue.SeasonalIndex.flat())
    table = table.set_index("period")
    assert table.loc["30d", "expected_new_customers"] == pytest.approx(60.0)
    # 60 arrivals x 40 + their repeat purchases in the 30 days x the population order value
    repeats = sum(
        float(model.transactions.expected_number_of_purchases_up_to_time((30 - a) / 7)) for a in range(1, 30)
    ) * 2.0
    assert table.loc["30d", "revenue"] == pytest.approx(60 * 40 + repeats * model.spend.population_mean, rel=1e-9)


def test_forecast_backtest_beats_the_seasonal_naive_baseline_on_the_demo_store():
    result = backtest.run_forecast_backtest("demo")
    summary = result["summary"]
    assert result["cutoff"] == "2025-10-31" and summary["months_scored"] == 12
    assert summary["months_with_baseline"] == 12
    assert summary["beats_baseline"] and summary["mape_forecast"] < summary["mape_baseline"]
    assert summary["coverage_80"] >= 0.5
    for row in result["months"]:
        assert row["ape_forecast"] == pytest.approx(abs(row["forecast"] - row["actual"]) / row["actual"])
        assert row["actual"] == pytest.approx(row["actual_existing"] + row["actual_new"])
    html = backtest.forecast_section_html(result)
    assert "MAPE" in html and "<svg" in html


def test_forecast_cutoff_must_be_a_month_end_before_the_data_end():
    with pytest.raises(ValueError, match="month end"):
        backtest.run_forecast_backtest("demo", "2025-10-15")
    with pytest.raises(ValueError, match="not before the end"):
        backtest.run_forecast_backtest("demo", "2026-10-31")



@pytest.mark.parametrize("with_predictions", [True, False])
def test_grouped_summary_rows_give_the_per_customer_forecast(fitted, with_predictions):
    """The nightly groups ml.btyd_scores in SQL (one row per distinct summary, its customer count and
    summed predictions): every column of the existing-customer forecast must equal the per-customer one."""
    history, summary, model = fitted
    # many customers sharing a summary, as one-time buyers of a first-order day do
    customers = pd.concat([summary, summary.iloc[:400], summary.iloc[:100]])
    customers.index = [f"c{i}" for i in range(len(customers))]
    rng = np.random.default_rng(1)
    predicted = pd.Series(rng.gamma(2.0, 60.0, len(customers)), index=customers.index) if with_predictions else None
    if predicted is not None:
        predicted.iloc[::7] = 0.0
    season = revenue.seasonal_index(history, model, CUTOFF)
    periods = revenue.forecast_periods(CUTOFF)
    per_customer = revenue.existing_customer_forecast(customers, model, CUTOFF, periods, season, predicted,
                                                      error_scale=0.1)
    keys = ["frequency", "recency", "T", "monetary"]
    frame = customers[keys].assign(predicted=predicted if predicted is not None else 0.0)
    grouped = frame.groupby(keys, as_index=False).agg(customers=("predicted", "size"), predicted=("predicted", "sum"))
    assert len(grouped) < len(customers) - 400  # the duplicates did collapse
    summed = grouped.pop("predicted") if predicted is not None else None
    got = revenue.existing_customer_forecast(grouped, model, CUTOFF, periods, season, summed, error_scale=0.1)
    pd.testing.assert_frame_equal(got, per_customer, rtol=1e-10)
    assert per_customer["expected_purchases"].iloc[0] > 0


def test_purchase_model_fit_is_capped_to_a_deterministic_customer_sample(fitted):
    """Above ``max_customers`` the rehearsal's BTYD is fitted on the cap_rows sample (the CLV fits'
    sample); at or below it the fit is the one on every customer, parameter for parameter."""
    from clv_platform.models.clv.windows import cap_rows

    _, summary, model = fitted
    n = len(summary)
    same = revenue.fit_purchase_model(summary, max_customers=n)
    assert same.params()["transaction_params"] == model.params()["transaction_params"]
    capped = revenue.fit_purchase_model(summary, max_customers=n // 2)
    sample = cap_rows(summary.rename_axis("customer_id").reset_index(), n // 2).set_index("customer_id")
    assert len(sample) == n // 2
    by_hand = btyd.fit_btyd(sample, btyd.BGNBD)
    assert capped.params()["transaction_params"] == by_hand.params()["transaction_params"]
    assert capped.params()["transaction_params"] != model.params()["transaction_params"]


def test_systematic_term_is_one_rehearsal_as_a_t_draw_grown_with_the_square_root_of_the_horizon():
    """The rehearsal's scale s is one draw of the method's error: sd = t(0.9, 1) / z(0.9) x s x
    sqrt(months to the period's middle), so the 80 % half width is 3.078 s sqrt(months) (the CLV
    store total's t rule), never below the in-sample scatter."""
    assert revenue.REHEARSAL_T_FACTOR == pytest.approx(3.0776835 / 1.2815516, rel=1e-6)
    cutoff = date(2026, 10, 31)
    periods = {p.label: p for p in revenue.forecast_periods(cutoff)}
    # 365d: middle at 182.5 days = 5.9959 months; 2.40153 x 0.05 x 2.44865 = 0.29403
    assert revenue._relative_sd(0.02, 0.05, periods["365d"], cutoff) == pytest.approx(0.294025, rel=1e-5)
    # November (30 days): middle at 15 days = 0.49 months, floored at half a month: 2.40153 x 0.05 x 0.70711
    assert revenue._relative_sd(0.02, 0.05, periods["M01"], cutoff) == pytest.approx(0.084907, rel=1e-5)
    # the 90 days: middle 45 days = 1.4784 months: 2.40153 x 0.05 x 1.21590 = 0.146000
    assert revenue._relative_sd(0.0, 0.05, periods["90d"], cutoff) == pytest.approx(0.146000, rel=1e-4)
    # no rehearsal: the in-sample scatter alone, not grown
    assert revenue._relative_sd(0.02, 0.0, periods["365d"], cutoff) == 0.02
    assert revenue._relative_sd(0.5, 0.05, periods["365d"], cutoff) == 0.5


def test_rehearsal_scale_widens_the_existing_interval_by_the_t_rule(fitted):
    """The existing part's variance is purchase noise plus (systematic sd x revenue)^2: with a scale of
    0.05 the 365-day sd of a flat season is sqrt(noise + (0.29403 revenue)^2), and its 80 % bounds are
    revenue x exp(-+1.2816 sigma), sigma^2 = ln(1 + (sd / revenue)^2) (symmetric in log space)."""
    _, summary, model = fitted
    flat = revenue.SeasonalIndex.flat()
    cutoff = CUTOFF
    periods = revenue.forecast_periods(cutoff)
    noise = revenue.existing_customer_forecast(summary, model, cutoff, periods, flat).set_index("period")
    wide = revenue.existing_customer_forecast(summary, model, cutoff, periods, flat, error_scale=0.05).set_index("period")
    mean, noise_sd = noise.loc["365d", "revenue"], noise.loc["365d", "revenue_sd"]
    months = 182.5 / (365.25 / 12)
    systematic = 3.0776835 / 1.2815516 * 0.05 * np.sqrt(months)
    expected_sd = np.sqrt(noise_sd ** 2 + (systematic * mean) ** 2)
    assert wide.loc["365d", "revenue"] == pytest.approx(mean, rel=1e-12)
    assert wide.loc["365d", "revenue_sd"] == pytest.approx(expected_sd, rel=1e-6)
    sigma = np.sqrt(np.log1p((expected_sd / mean) ** 2))
    assert wide.loc["365d", "revenue_high"] == pytest.approx(mean * np.exp(1.2815516 * sigma), rel=1e-6)
    assert wide.loc["365d", "revenue_low"] == pytest.approx(mean * np.exp(-1.2815516 * sigma), rel=1e-6)
    # the systematic term dominates: sigma about ln(1 + 0.294^2) ^ 0.5 = 0.288, bounds x 0.69 .. 1.45
    assert wide.loc["365d", "revenue_high"] / mean == pytest.approx(1.447, abs=0.01)
    assert wide.loc["365d", "revenue_low"] / mean == pytest.approx(1 / 1.447, abs=0.01)


def test_bounds_are_symmetric_in_log_space_and_never_floored_at_zero():
    """A normal interval floored at 0 put the lower bound of a store's existing revenue at 0 once its
    relative sd passed 1 / 1.2816 (a 787-customer Superstore-shaped store of steady buyers: 365-day
    forecast 588,933 with bounds 0 .. 1,257,406, and months 6-12 floored at 0). The bounds are the
    revenue x exp(-+1.2816 sigma), sigma^2 = ln(1 + CV^2): the normal ones for a small CV, above 0 for
    any; the sd is recovered from them (the rehearsal subtracts the purchase noise with it)."""
    low, high = revenue.log_bounds(100.0, 1.0)
    assert (low, high) == (pytest.approx(100.0 - 1.2815516, abs=0.01), pytest.approx(100.0 + 1.2815516, abs=0.01))
    low, high = revenue.log_bounds(588_933.0, 1.3 * 588_933.0)
    sigma = np.sqrt(np.log(1 + 1.3 ** 2))
    assert low == pytest.approx(588_933.0 * np.exp(-1.2815516 * sigma)) and low > 0.2 * 588_933.0
    assert high == pytest.approx(588_933.0 ** 2 / low)
    assert revenue.sd_from_bounds(588_933.0, high) == pytest.approx(1.3 * 588_933.0, rel=1e-9)
    assert revenue.log_bounds(0.0, 5.0) == (0.0, pytest.approx(1.2815516 * 5.0))
    lows, highs = revenue.log_bounds(np.array([100.0, 0.0]), np.array([1.0, 5.0]))
    assert lows.tolist() == [pytest.approx(98.72, abs=0.01), 0.0] and highs[1] == pytest.approx(6.4078, abs=1e-3)


def test_interval_rule_says_what_the_systematic_term_rests_on():
    with_one = revenue.Rehearsal(date(2026, 4, 30), 0.03, 0.05, 6)
    assert "2.402" in revenue.interval_rule(0.01, with_one) and "0.0300" in revenue.interval_rule(0.01, with_one)
    assert "0.0500" in revenue.interval_rule(0.01, with_one, "new")
    assert revenue.interval_rule(0.01, revenue.Rehearsal.none()).startswith("in-sample scatter only")


def test_a_store_too_small_for_a_btyd_at_the_rehearsal_cutoff_is_forecast_without_rehearsal():
    """Three customers; six months before the cutoff two one-time buyers, on which the rehearsal's BG/NBD
    converges with none of its penalizers: no rehearsal (in-sample scatter only), not a failed marts/revenue_forecast."""
    history = pd.DataFrame({
        "customer_id": ["a", "a", "b", "c", "c", "c"],
        "order_date": pd.to_datetime(["2025-01-05", "2025-06-01", "2025-03-01", "2026-02-01", "2026-10-01",
                                      "2026-11-30"]),
        "amount": [20.0, 35.0, 50.0, 10.0, 12.0, 15.0],
    })
    cutoff = date(2026, 11, 30)
    rc = revenue.rehearsal_cutoff(cutoff)
    with pytest.raises(btyd.ConvergenceError):  # what the forecast failed with
        revenue.fit_purchase_model(btyd.summarize(history[history["order_date"] <= pd.Timestamp(rc)], rc))
    assert revenue.rehearse(history, cutoff) == revenue.Rehearsal.none()
    result = revenue.forecast_revenue(history, cutoff, model=btyd.fit_btyd(btyd.summarize(history, cutoff), btyd.AUTO))
    assert result.rehearsal.cutoff is None
    table = result.table.set_index("period")
    assert np.isfinite(table[["existing_revenue", "new_revenue", "total_revenue", "total_revenue_high"]].to_numpy()).all()
    assert "too few customers then for a BTYD fit" in revenue.interval_rule(0.0, result.rehearsal)


def test_demo_transactions_are_net_sales_a_shipping_refund_leaves_the_order_whole():
    """The forecast backtest's demo amounts are staging's net sales: subtotal minus the products
    refunded. A refund of the shipping only refunds no product (it took the shipping off before)."""
    from clv_platform.ingestion.demo_store import DemoStoreParams, generate

    start, end = date(2024, 11, 1), date(2025, 10, 31)
    store = generate(DemoStoreParams(n_customers=400, seed=5, start_date=start, end_date=end))
    kept = store.orders[~store.orders["is_test"] & ~store.orders["fate"].isin([1, 2])].reset_index(drop=True)
    amounts = backtest.demo_transactions(start, end, n_customers=400, seed=5)["amount"].to_numpy()
    shipping_only = (kept["refund_scope"] == 3).to_numpy()
    partial = (kept["refund_scope"] == 1).to_numpy()
    assert shipping_only.sum() > 0 and partial.sum() > 0
    gross = kept["gross_cents"].to_numpy() / 100.0
    np.testing.assert_allclose(amounts[shipping_only], gross[shipping_only])
    # a partial refund takes the returned line off, not its tax
    np.testing.assert_allclose(amounts[partial], gross[partial] - kept["refund_products_cents"].to_numpy()[partial] / 100.0)
    assert (amounts[partial] > gross[partial] - kept["refund_cents"].to_numpy()[partial] / 100.0).all()


def test_a_rehearsal_on_one_customer_gives_a_forecast_not_a_linear_algebra_error():
    """A line-level export of three customers (Kaggle's Sales Transaction v.4a, cut down): six months
    before the cutoff one customer had bought once, the rehearsal's BG/NBD Hessian was singular and
    marts/revenue_forecast failed with numpy's 'Singular matrix'. The forecast is made; its bounds are
    finite and above 0 where the revenue is."""
    history = pd.DataFrame({
        "customer_id": ["17490", "17490", "13069", "14397"],
        "order_date": pd.to_datetime(["2018-12-01", "2019-12-09", "2019-12-09", "2019-12-08"]),
        "amount": [36.24, 257.64, 521.76, 66.36],
    })
    cutoff = date(2019, 12, 9)
    rehearsal = revenue.rehearse(history, cutoff)
    assert rehearsal.cutoff == date(2019, 6, 9) and rehearsal.months == 6
    result = revenue.forecast_revenue(history, cutoff, model=btyd.fit_btyd(btyd.summarize(history, cutoff), btyd.AUTO))
    table = result.table.set_index("period")
    bounds = table[["existing_revenue_low", "existing_revenue_high", "total_revenue_low", "total_revenue_high"]]
    assert np.isfinite(bounds.to_numpy()).all()
    assert (table["existing_revenue_low"] > 0).all() and (table["existing_revenue"] > 0).all()
    assert (table["existing_revenue_low"] < table["existing_revenue"]).all()


def test_a_rehearsal_that_scored_no_month_is_no_rehearsal():
    """Where neither part had a month with a positive forecast and a positive actual, the rehearsal
    measured nothing: the interval rule says so (in-sample scatter only) instead of a measured scale of 0."""
    rc = date(2026, 4, 30)
    periods = [p for p in revenue.forecast_periods(rc, 6) if p.kind == "month"]
    table = pd.DataFrame({"period": [p.label for p in periods], "existing_revenue": 100.0, "existing_revenue_high": 120.0,
                          "new_revenue": 0.0, "new_revenue_high": 0.0})
    actual = pd.DataFrame({"period": [p.label for p in periods], "actual_existing_revenue": 0.0, "actual_new_revenue": 0.0})
    assert revenue.rehearsal_errors(table, actual, periods, rc) == revenue.Rehearsal.none()
    actual.loc[2, "actual_existing_revenue"] = 100.0 * np.exp(0.3)
    measured = revenue.rehearsal_errors(table, actual, periods, rc)
    # one month (h = 3): s^2 = (0.3^2 - (sd / 100)^2) / 3, the sd of bounds 100 .. 120 in log space
    sd = revenue.sd_from_bounds(100.0, 120.0)
    assert measured.cutoff == rc and measured.new_scale == 0.0
    assert measured.existing_scale == pytest.approx(np.sqrt((0.09 - (sd / 100.0) ** 2) / 3), rel=1e-9)


def test_a_young_store_whose_acquisition_slows_is_not_extrapolated_at_its_early_climb():
    """Ten months of a store whose first orders climb after its launch and level off at about 40 a
    day. Under a year the acquisition model is a trend only; fitted evenly over the history it took
    the launch's climb for today's growth: 49 a day in the first month and 77.5 from six months on
    (1.95 x the plateau). With the recent days weighing more (half-life a quarter) the slope is the
    recent one: 43.6 and 58.9 (1.48 x). Still above the plateau: the weighted log-linear trend
    keeps some of the climb, which a store under a year old cannot tell from growth."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2025-01-01", "2025-10-31", freq="D")
    rate = 40.0 * (1.0 - np.exp(-np.arange(len(days)) / 60.0))
    counts = rng.poisson(rate)
    firsts = pd.DataFrame({"first_date": np.repeat(days.to_numpy(), counts), "first_value": 50.0})
    fit = revenue.fit_acquisition(firsts, date(2025, 10, 31), 365)
    assert fit.history_days < 365
    plateau = rate[-1]
    assert fit.daily_mean[:30].mean() / plateau == pytest.approx(1.10, abs=0.03)
    # six months on, where the trend is held flat
    assert fit.daily_mean[180:].mean() / plateau == pytest.approx(1.48, abs=0.05)
    assert fit.daily_mean[180:].mean() == pytest.approx(fit.daily_mean[180:210].mean(), rel=0.03)


def test_the_forecast_backtest_forecasts_with_the_family_the_platform_serves(tmp_path, monkeypatch):
    """A store where nobody stops buying: BG/NBD does not converge at any penalizer there, and the
    forecast backtest, which fitted BG/NBD whatever the platform serves, failed ("The model did not
    converge") on a store that marts/revenue_forecast forecasts with the family ``fit_auto`` serves.
    The backtest now forecasts with that family, clv.toml's, as the asset does."""
    bgnbd_never_converges(monkeypatch)
    tx = no_churn_transactions()
    path = tmp_path / "nochurn.csv"
    tx.to_csv(path, index=False)
    cutoff = date(2023, 1, 31)
    history = tx.assign(order_date=pd.to_datetime(tx["order_date"]))
    summary = btyd.summarize(history[history["order_date"] <= pd.Timestamp(cutoff)], cutoff)
    with pytest.raises(btyd.ConvergenceError):
        btyd.fit_btyd(summary, btyd.BGNBD)
    served = backtest.served_purchase_model(summary)
    assert served.model in btyd.AUTO_FAMILIES and served.model == btyd.fit_btyd(summary, btyd.AUTO).model
    result = backtest.run_forecast_backtest(str(path), "2023-01-31")
    assert result["summary"]["months_scored"] == 10  # February to November 2023
    # a store that names one family in its clv.toml (`backtest --config`) is backtested with it
    toml = tmp_path / "clv.toml"
    toml.write_text(clv.default_config_path().read_text().replace('model = "auto"', 'model = "bgnbd"', 1))
    with pytest.raises(btyd.ConvergenceError):
        backtest.run_forecast_backtest(str(path), "2023-01-31", config_path=toml)
    # every customer is still buying: the existing customers' part of the first months is near what came
    first = result["months"][0]
    assert first["forecast_existing"] == pytest.approx(first["actual_existing"], rel=0.15)
