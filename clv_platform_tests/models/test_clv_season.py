"""The CLV model's seasons (``clv.season``): a label window is divided by its season's factor, a
forecast multiplied by the coming season's, and a store too young for a yearly season gets none."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from clv_platform.forecast import backtest as forecast_backtest
from clv_platform.models import clv, frames, seasonality
from clv_platform.models.clv.config import HYBRID, ObjectiveSpec

# January to June 1.2, July to December 0.8; the BTYD expected 10 repeat purchases a month in 2025
HALVES = (1.2,) * 6 + (0.8,) * 6
EXPOSURE = tuple((date(2025, m, 1).isoformat(), 10.0) for m in range(1, 13))


def _halves() -> clv.ClvSeason:
    return clv.ClvSeason(HALVES, EXPOSURE, 12, "two halves")


def test_window_means_and_the_exposure_the_btyd_saw():
    season = _halves()
    assert season.mean_over(date(2025, 12, 31), 31) == pytest.approx(1.2)  # January 2026
    # 16-30 June at 1.2, 1-15 July at 0.8
    assert season.mean_over(date(2025, 6, 15), 30) == pytest.approx(1.0)
    # a BTYD fitted at the end of June watched January to June only; one fitted a day earlier, January to May
    assert season.exposure_mean(date(2025, 6, 30)) == pytest.approx(1.2)
    assert season.exposure_mean(date(2025, 6, 29)) == pytest.approx(1.2)
    assert season.exposure_mean(date(2025, 12, 31)) == pytest.approx(1.0)
    assert season.exposure_mean(date(2024, 12, 31)) == 1.0  # before any month tracked
    # a later cutoff sees the same tracked months: the rate the model learned by its training cutoff
    assert season.exposure_mean(date(2026, 8, 1)) == pytest.approx(1.0)
    # customers known at 2025-06-30, labelled over July-September: the season makes a stationary
    # forecast 0.8 / 1.2 of the rate the BTYD learned
    assert season.label_factor(date(2025, 6, 30), 92) == pytest.approx(0.8 / 1.2)
    # from 2025-12-31 over 365 days with a 181-day label window: January-June, then July-December
    assert season.forward(date(2025, 12, 31), 181, 365) == pytest.approx((1.2, 0.8))
    # a horizon inside the label window has one part
    assert season.forward(date(2025, 12, 31), 181, 31) == pytest.approx((1.2, 1.2))
    assert clv.ClvSeason.from_dict(season.as_dict()) == season
    flat = clv.ClvSeason.none("too young")
    assert flat.is_flat and flat.forward(date(2025, 12, 31), 181, 365) == (1.0, 1.0)
    assert flat.label_factor(date(2025, 6, 30), 92) == 1.0


def test_deseasonalize_divides_each_window_by_its_own_factor():
    season = _halves()
    rows = pd.DataFrame({"customer_id": ["a", "b", "a"], "label_spend": [80.0, 0.0, 120.0],
                         "window_end": pd.to_datetime(["2025-09-30", "2025-09-30", "2026-04-02"])})
    out = clv.deseasonalize(rows, season, 92)
    # window ending 2025-09-30: features at 2025-06-30, July-September 0.8 against 1.2 seen
    # window ending 2026-04-02: features at 2025-12-31, January-April 1.2 against the year's 1.0
    assert out["label_spend"].tolist() == pytest.approx([80.0 * 1.2 / 0.8, 0.0, 120.0 / 1.2])
    # one window a day earlier sees 30 December too and only January-November tracked
    earlier = clv.deseasonalize(rows.assign(window_end=pd.Timestamp("2026-04-01")), season, 92)
    factor = ((1 * 0.8 + 91 * 1.2) / 92) / ((1.2 * 6 + 0.8 * 5) / 11)
    assert earlier["label_spend"].iloc[0] == pytest.approx(80.0 / factor)
    assert clv.deseasonalize(rows, clv.ClvSeason.none("young"), 92) is rows


def test_the_forecast_is_put_into_the_coming_season():
    frame = pd.DataFrame({"btyd_expected_spend": [100.0, 0.0], "btyd_expected_spend_horizon": [250.0, 0.0]})
    model = clv.ClvModel(None, [], ObjectiveSpec("btyd_only", {}, "identity"), HYBRID, 181, serves_btyd=True,
                         season=_halves())
    ratio = np.array([2.5, 1.0])
    # without a scoring cutoff: the stationary forecast (the units the validation window's labels are in)
    assert model.predict(frame, 365, ratio).tolist() == pytest.approx([250.0, 0.0])
    # from 2025-12-31: January-June at 1.2, the 150 after them at 0.8
    scored = replace(model, scoring_cutoff=date(2025, 12, 31))
    assert scored.predict(frame, 365, ratio).tolist() == pytest.approx([100.0 * 1.2 + 150.0 * 0.8, 0.0])
    assert scored.predict(frame, 181).tolist() == pytest.approx([120.0, 0.0])
    assert scored.season_factors(365) == pytest.approx((1.2, 0.8))


def _table(months: int, ratio) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01")
    month = pd.date_range(start, periods=months, freq="MS")
    expected = np.full(months, 400.0)
    return pd.DataFrame({"month": month, "actual": np.round(expected * ratio(np.arange(months), month.month - 1)),
                         "expected": expected})


def test_a_season_is_kept_only_from_a_year_of_months_and_when_it_is_there():
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 0.03, 40)
    # +-15 % peaking in late November, 3 % noise
    yearly = _table(15, lambda k, m: (1 + 0.15 * np.cos(2 * np.pi * (m - 10.5) / 12)) * np.exp(noise[k]))
    season = clv.season.season_from_table(yearly, 12)
    assert not season.is_flat and season.months_used == 15
    assert max(season.index) == season.index[10] or max(season.index) == season.index[11]
    assert 1.10 < max(season.index) < 1.20 and 0.80 < min(season.index) < 0.90
    # one harmonic: a second adds nothing beyond noise to a sinusoid
    assert season.reason.startswith("month-of-year index from 15 tracked months, 1 yearly harmonic (F tests p = 0.0")
    # eleven months of it: too few for a yearly season
    young = clv.season.season_from_table(yearly.head(11), 12)
    assert young.is_flat and young.months_used == 11
    assert young.reason == ("11 usable months tracked by the cutoff, fewer than 12: a yearly season needs a year "
                            "of months seen")
    # a BTYD drifting 10 % a year against the months, no season: half a sine over 15 months is not one
    drift = clv.season.season_from_table(_table(15, lambda k, m: np.exp(-0.1 * k / 12 + noise[k])), 12)
    assert drift.is_flat and drift.reason.startswith("no season in 15 tracked months (F test")
    # an autumn ramp (holiday.csv of benchmarks/awkward_stores: 1.35, 1.5, 1.75 from September to November, 0.75
    # in January and February, 0.85-1.0 otherwise): more harmonics, each beyond noise, resolve its peak where one
    # spread it into a hump of about 1.2 from August to October
    from benchmarks.awkward_stores import HOLIDAY_MONTHS as ramp
    for months in (15, 20):
        autumn = clv.season.season_from_table(_table(months, lambda k, m: ramp[m] * np.exp(noise[k])), 12)
        index = np.asarray(autumn.index)
        truth = ramp / ramp.mean()
        assert " 3 yearly harmonics " in autumn.reason or " 2 yearly harmonics " in autumn.reason
        assert int(np.argmax(index)) in (9, 10) and index[9:11].mean() > 1.4
        assert index[:2].max() < 0.8
        assert np.sqrt(np.mean(np.log(index / truth) ** 2)) < 0.10  # one harmonic: 0.18
    # months the model expects under 20 repeat purchases in do not count
    thin = yearly.assign(expected=np.where(np.arange(15) < 4, 10.0, 400.0))
    assert clv.season.season_from_table(thin, 12).months_used == 11


@pytest.fixture(scope="module")
def demo_tx() -> pd.DataFrame:
    return forecast_backtest.demo_transactions(date(2023, 11, 1), date(2025, 10, 31), n_customers=3000, seed=8)


def test_after_black_friday_the_btyd_in_season_forecasts_spring_better_than_the_stationary_btyd(demo_tx):
    """The demo store (yearly intensity 1 + 0.15 cos(2 pi (t - Nov 28) / year)) at the end of February:
    the BTYD fitted there learned a rate lifted by the peak it just watched, and over March-July it
    forecasts too much; the season measured by that cutoff puts it back into spring."""
    tx = demo_tx
    cutoff, h = date(2025, 2, 28), 150
    conn = frames.staging_connection(tx)
    try:
        config = clv.load_config().for_backtest(h, h)
        frame, model = clv.scoring_frame(conn, cutoff, config)
        season = clv.fit_season(conn, cutoff, model, 12)
    finally:
        conn.close()
    assert not season.is_flat and season.months_used >= 12
    assert season.index[10] > 1.05 and season.index[5] < 0.95  # November high, June low
    within, _ = season.forward(cutoff, h, h)
    assert within < 0.95
    later = tx[(tx["order_date"] > pd.Timestamp(cutoff)) & (tx["order_date"] <= pd.Timestamp(cutoff) + pd.Timedelta(days=h))]
    actual = float(later[later["customer_id"].isin(frame["customer_id"])]["amount"].sum())
    stationary = float(frame["btyd_expected_spend"].sum())
    assert stationary / actual - 1.0 > 0.08  # the stationary BTYD is well over
    assert abs(stationary * within / actual - 1.0) < 0.5 * abs(stationary / actual - 1.0)


def test_the_extension_factor_compares_the_windows_without_their_seasons(demo_tx):
    """The extension factor's two windows one window back (features at C - 2h) are taken out of
    their seasons as the training labels are: the factor with the season is the one without it
    times (within window's factor / beyond window's factor)."""
    cutoff, h = date(2025, 8, 31), 120
    season = _halves()
    conn = frames.staging_connection(demo_tx)
    try:
        config = replace(clv.load_config(), label_horizon_days=h, max_extension_rows=0)
        plain = clv.btyd_extension_factor(conn, cutoff, config)
        seasonal = clv.btyd_extension_factor(conn, cutoff, config, season=season)
    finally:
        conn.close()
    start = date(2025, 8, 31) - pd.Timedelta(days=2 * h)  # 2025-01-03: windows to 2025-05-03 and 2025-08-31
    within = season.label_factor(start, h)
    beyond = season.mean_over(start + pd.Timedelta(days=h), h) / season.exposure_mean(start)
    # no month of the index's exposure is complete by 2025-01-03: the BTYD there watched the year's mean, 1
    assert within == pytest.approx(1.2) and beyond == pytest.approx((58 * 1.2 + 62 * 0.8) / 120)
    assert 0.5 < plain["factor"] < 2.0  # not at a bound, so the two are comparable
    assert seasonal["within_actual"] == pytest.approx(plain["within_actual"] / within)
    assert seasonal["actual"] == pytest.approx(plain["actual"] / beyond)
    assert seasonal["factor"] == pytest.approx(plain["factor"] * within / beyond)
