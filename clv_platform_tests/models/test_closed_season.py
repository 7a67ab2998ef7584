"""A shop closed for a season every year (open October to January): its closures are no customer's
time, the coming ones are projected, and no model is withheld over them."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import btyd, registry
from clv_platform.models.clv.season import ClvSeason
from clv_platform.transforms import order_gaps

OPEN_MONTHS = (10, 11, 12, 1)


def winter_store(seed: int = 3, customers: int = 400, start: str = "2020-10-01",
                 end: str = "2025-01-31") -> pd.DataFrame:
    """Customers who buy on open days only (October to January), each at a rate of their own until
    a lifetime ends: the shape of benchmarks/awkward_stores.py's winter store, over four seasons."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(start, end, freq="D")
    open_days = np.flatnonzero(days.month.isin(OPEN_MONTHS))
    rows = []
    for c in range(customers):
        first = int(rng.choice(open_days))
        chance = max(float(rng.gamma(0.8, 1 / 12)), 1e-3)
        later = open_days[(open_days > first) & (open_days <= first + rng.exponential(900))]
        for day in np.concatenate([[first], later[rng.random(later.size) < chance]]):
            rows.append((f"W{c:04d}", days[day].date(), round(float(rng.lognormal(4, 0.5)), 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


@pytest.fixture(scope="module")
def store() -> pd.DataFrame:
    return winter_store()


def stretches_at(store: pd.DataFrame, cutoff: str) -> order_gaps.Stretches:
    return order_gaps.transaction_stretches(store, pd.Timestamp(cutoff))


def test_a_yearly_closure_is_a_closed_season_read_as_no_customers_time(store):
    stretches = stretches_at(store, "2024-01-31")
    # three closures by the end of the fourth season: a rhythm, and one of seasons
    assert [(gap.start, gap.end) for gap in stretches.rhythm] == [
        (date(2021, 2, 1), date(2021, 9, 30)), (date(2022, 2, 1), date(2022, 9, 30)),
        (date(2023, 2, 1), date(2023, 9, 30))]
    assert stretches.unobserved == []
    assert stretches.closed == stretches.rhythm
    calendar = stretches.season_calendar
    assert calendar.open_time and calendar.period == 365 and calendar.closed == 242
    assert calendar.year_span == ((2, 1), (9, 30))
    # the coming closures fall on the same days of the year (a fixed 365-day cycle slips in a leap year)
    assert stretches.closed_ranges()[3:5] == [(date(2024, 2, 1), date(2024, 9, 30)),
                                              (date(2025, 2, 1), date(2025, 9, 30))]
    # the store's clock counts an open day as one day: the 366 days ahead (a leap year) hold the 123 of
    # October to January
    assert calendar.effective_days([7, 90, 365, 366]).tolist() == [0.0, 0.0, 122.0, 123.0]
    # the models read the closures as unobserved days; the gate that withholds a trained model does not
    gaps = order_gaps.transaction_gaps(store, pd.Timestamp("2024-01-31"))
    assert [(gap.start, gap.end) for gap in gaps] == [(gap.start, gap.end) for gap in stretches.rhythm]
    assert "a season the store closes for" in stretches.describe_rhythm()


def test_the_closure_under_way_at_the_cutoff_is_no_customers_time(store):
    stretches = stretches_at(store, "2024-08-04")
    last_order = pd.to_datetime(store["order_date"])[lambda d: d <= "2024-08-04"].max().date()
    assert last_order == date(2024, 1, 31)
    assert stretches.tail is None  # as long as the rhythm's runs: the current run, not a feed that stopped
    current = stretches.closed[-1]
    assert (current.start, current.end, current.days) == (date(2024, 2, 1), date(2024, 8, 4), 186)
    # a customer who last bought on the last open day is as recent at the cutoff as on that day
    summary = btyd.summarize(store, pd.Timestamp("2024-08-04"))
    first = pd.to_datetime(store.groupby("customer_id")["order_date"].min()).reindex(summary.index)
    calendar_age = (pd.Timestamp("2024-08-04") - first).dt.days.to_numpy()
    closed_days = order_gaps.stretch_days(stretches.time_gaps, first.to_numpy(), np.datetime64("2024-08-04"))
    assert np.allclose(summary["T"].to_numpy() * 7, calendar_age - closed_days)
    # a customer who first bought in January 2024 is as old at the cutoff as on the season's last day
    january = (first >= "2024-01-01").to_numpy()
    assert january.sum() > 10
    assert np.allclose(summary["T"].to_numpy()[january] * 7, (pd.Timestamp("2024-01-31") - first[january]).dt.days)


def test_the_holdout_counts_the_open_days_the_history_projects(store):
    # February 2024 to January 2025: October to January are open (31 + 30 + 31 + 31 days)
    assert btyd.holdout_weeks("2024-01-31", "2025-01-31", store) == pytest.approx(123 / 7)
    assert btyd.holdout_weeks("2024-01-31", "2025-01-31") == pytest.approx(366 / 7)
    # two closures the same months a year apart are a closed season already (February 2023 to January
    # 2024: 123 open days); one is a stretch, which the forecast counts as open days ahead
    assert btyd.holdout_weeks("2023-01-31", "2024-01-31", store) == pytest.approx(123 / 7)
    assert btyd.holdout_weeks("2022-01-31", "2023-01-31", store) == pytest.approx(365 / 7)


def test_a_monthly_rhythm_is_no_closed_season():
    days = pd.date_range("2023-01-01", "2024-12-31", freq="MS")  # invoices dated on the 1st
    store = pd.DataFrame({"customer_id": [f"A{i % 40}" for i in range(len(days) * 30)],
                          "order_date": np.repeat(days, 30), "amount": 10.0})
    stretches = stretches_at(store, "2024-12-31")
    assert len(stretches.rhythm) >= 20 and stretches.closed == [] and stretches.season_calendar is None
    assert stretches.time_gaps == stretches.unobserved == []
    assert btyd.holdout_weeks("2024-06-30", "2024-12-31", store) == pytest.approx(184 / 7)


def test_the_clv_season_counts_a_closed_day_zero():
    closed = (("2024-02-01", "2024-09-30"), ("2025-02-01", "2025-09-30"))
    season = ClvSeason((1.0,) * 12, (), 0, "no season", closed)
    assert not season.is_flat
    # a year from the end of the season holds 123 open days of 366
    assert season.mean_over(date(2024, 1, 31), 366) == pytest.approx(123 / 366)
    assert season.mean_over(date(2024, 2, 10), 180) == 0.0
    assert season.factor(date(2024, 1, 31), 366, date(2024, 1, 31)) == pytest.approx(123 / 366)
    assert season.closed_windows([date(2024, 8, 8), date(2025, 1, 31)], 180) == [date(2024, 8, 8)]
    assert ClvSeason.from_dict(season.as_dict()) == season
    assert season.closures_only() == season
    assert ClvSeason.none("none").closures_only() is None
    assert ClvSeason.from_dict(ClvSeason.none("none").as_dict()).closed == ()


@pytest.fixture
def winter_run(tmp_path_factory):
    """The files pipeline on a winter store (for one test: the cheaper clv.toml it patches in is undone
    after it)."""
    from clv_platform_tests.cheap_config import files_store_run

    folder = tmp_path_factory.mktemp("winter")
    orders = winter_store(seed=5, customers=900)
    with files_store_run(folder, lambda inbox: orders.to_csv(inbox / "winter.csv", index=False), "USD") as run:
        yield run, orders


def test_a_closed_seasons_store_end_to_end_forecasts_its_open_days(winter_run):
    run, orders = winter_run
    assert run.code == 0
    dates = pd.to_datetime(orders["order_date"])
    last_season = float(orders.loc[dates > "2024-09-30", "amount"].sum())
    with duckdb.connect(str(run.db), read_only=True) as conn:
        cutoff = conn.execute("select max(feature_cutoff) from features.customer_features").fetchone()[0]
        assert cutoff == date(2025, 1, 31)
        sidecar = conn.execute("""select path from ml.model_runs where model_name = 'clv_xgb'
                                  order by trained_at desc limit 1""").fetchone()[0]
        total, alive = conn.execute("select sum(predicted_spend), median(p_alive) from scores.customer_clv").fetchone()
        npd = conn.execute("""select max(p_purchase_90d), count(predicted_next_purchase_date)
                              from scores.customer_npd""").fetchone()
    # every label window spans a whole cycle, so each holds one season (180 days from the season's end
    # would hold none: nothing to learn)
    saved = registry.read_sidecar(sidecar)
    assert saved["label_horizon_days"] == 365
    assert saved["serving"]["label_window"].startswith("365 days: a whole cycle of the store's closed seasons")
    # as of the season's last day the next 90 days are closed: nobody buys, nobody is dated
    assert npd[0] < 1e-6 and npd[1] == 0
    # the coming year holds one season: the forecast is of its order, and nobody is read as lapsed
    assert 0.4 * last_season < total < 1.6 * last_season
    assert alive > 0.1


def test_a_live_store_in_its_second_closed_season_is_scored_as_closed(tmp_path, monkeypatch):
    """The files pipeline as of 30 June 2024, inside the second summer of a shop open October to
    January since 2022 (one closure seen): the silence since 1 February is the season again (session
    54). Read as unobserved days, the coming summer was days to buy on: P(90 d) and next-purchase
    dates for a shop closed until October, and a revenue forecast in the closed months."""
    from clv_platform_tests.cheap_config import files_store_run

    orders = winter_store(seed=5, customers=900, start="2022-10-01", end="2024-01-31")

    def write(inbox):  # after files_store_run has cleared the environment, CLV_AS_OF among it
        monkeypatch.setenv("CLV_AS_OF", "2024-06-30")
        orders.to_csv(inbox / "winter.csv", index=False)

    with files_store_run(tmp_path, write, "USD") as run:
        assert run.code == 0
        with duckdb.connect(str(run.db), read_only=True) as conn:
            cutoff = conn.execute("select max(feature_cutoff) from features.customer_features").fetchone()[0]
            npd = conn.execute("""select max(p_purchase_90d), count(predicted_next_purchase_date)
                                  from scores.customer_npd""").fetchone()
            total = conn.execute("select sum(predicted_spend) from scores.customer_clv").fetchone()[0]
            months = dict(conn.execute("""select period, total_revenue from marts.revenue_forecast
                                          where period_kind = 'month'""").fetchall())
    assert cutoff == date(2024, 6, 30)
    # closed until 30 September: nobody buys within 90 days, nobody is dated
    assert npd[0] < 1e-6 and npd[1] == 0
    # July to September forecast nothing, October (the season's first month) something
    assert [months[m] for m in ("M01", "M02", "M03")] == [0.0, 0.0, 0.0] and months["M04"] > 0
    # the coming year holds one season of these customers: of the order of the last one's sales
    last_season = float(orders.loc[pd.to_datetime(orders["order_date"]) > "2023-09-30", "amount"].sum())
    assert 0.3 * last_season < total < 1.5 * last_season


def test_label_windows_span_a_whole_cycle_and_a_stand_in_keeps_the_closures(store):
    from clv_platform.models import clv
    from clv_platform.models.clv.season import closures_at
    from clv_platform.models.frames import load_staging

    conn = duckdb.connect()
    load_staging(conn, store)
    # four seasons of history: a whole cycle, whatever is configured
    window = clv.supported_label_window(conn, date(2024, 12, 31), 180)
    assert (window.days, window.configured) == (365, 180)
    assert window.note.startswith("365 days: a whole cycle")
    # three closures, but a cycle needs three cycles after the 10th repeat buyer (7 November 2020): too
    # short to train on 3 October 2023
    with pytest.raises(clv.HistoryTooShort, match="its label windows span a whole cycle"):
        clv.supported_label_window(conn, date(2023, 10, 3), 180)
    # the BTYD stand-in then still counts only the open days ahead: 4 October to 31 January, 1-3 October
    season = closures_at(conn, date(2023, 10, 3))
    assert season.closed[-3:-1] == (("2024-02-01", "2024-09-30"), ("2025-02-01", "2025-09-30"))
    stand_in = clv.btyd_only(date(2023, 10, 3), clv.load_config(), "too short", season=season)
    assert stand_in.model.season is season and stand_in.serving["history_too_short"]
    assert stand_in.model.season.factor(date(2023, 10, 3), 366, date(2023, 10, 3)) == pytest.approx((120 + 3) / 366)
    # a store that never closes gets none
    open_store = store.assign(order_date=pd.to_datetime(store["order_date"]) + pd.to_timedelta(
        np.arange(len(store)) % 240, unit="D"))
    other = duckdb.connect()
    load_staging(other, open_store)
    assert closures_at(other, date(2024, 12, 31)) is None


def test_the_backtest_of_a_store_short_of_three_cycles_serves_the_stand_in_with_the_closures(store, tmp_path,
                                                                                            monkeypatch):
    from clv_platform.backtest_cli import run_backtest
    from clv_platform_tests.cheap_config import cheap_clv_config

    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    path = tmp_path / "winter.csv"
    store.to_csv(path, index=False)
    # two closures by the end of the third season: a closed season, but no three whole cycles to train on
    result, _ = run_backtest(str(path), "2023-01-31", "2024-01-31", config_path=str(cheap_clv_config(tmp_path)),
                             with_npd=False)
    serving = result["serving"]
    assert serving["served"] == "btyd" and "its label windows span a whole cycle" in serving["reason"]
    assert result["window"]["label_window"].startswith("none: the BTYD stand-in is served")
    models, actual = result["holdout"]["models"], result["holdout"]["actual_total"]
    # the closures count no days ahead: the year's forecast is of its one season (in calendar time,
    # read as missing records, the BTYD forecast this store's year at about three times the actual)
    assert abs(models["served"]["predicted_total"] / actual - 1) < 0.35
    assert abs(models["btyd"]["predicted_total"] / actual - 1) < 0.35
    assert models["served"]["normalized_gini"] > 0.75


def test_the_backtest_from_inside_the_second_closure_reads_it_as_the_season_again(store, tmp_path, monkeypatch):
    """One closure seen (2021) and the next under way since the same day a year later (session 54):
    the BTYD counts neither, nor the rest of the closure ahead. Read as unobserved days, the silence
    left the coming summer as days to buy on: the year was served at +221 % (the BTYD +248 %)."""
    from clv_platform.backtest_cli import run_backtest
    from clv_platform_tests.cheap_config import cheap_clv_config

    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    path = tmp_path / "winter.csv"
    store.to_csv(path, index=False)
    stretches = stretches_at(store, "2022-07-31")
    assert stretches.under_way.start == date(2022, 2, 1) and stretches.tail is None
    assert stretches.closed_ranges()[:3] == [(date(2021, 2, 1), date(2021, 9, 30)), (date(2022, 2, 1), date(2022, 7, 31)),
                                             (date(2022, 8, 1), date(2022, 9, 30))]
    result, _ = run_backtest(str(path), "2022-07-31", "2023-07-31", config_path=str(cheap_clv_config(tmp_path)))
    serving = result["serving"]
    assert serving["served"] == "btyd" and "its label windows span a whole cycle" in serving["reason"]
    models, actual = result["holdout"]["models"], result["holdout"]["actual_total"]
    assert abs(models["served"]["predicted_total"] / actual - 1) < 0.35
    assert abs(models["btyd"]["predicted_total"] / actual - 1) < 0.35
    assert models["served"]["normalized_gini"] > 0.75
    # the next-purchase backtest: no purchase in the closed label window before the cutoff, so the
    # fallback is served, as ml/npd_model does (the whole backtest used to stop), and nobody is
    # expected to buy within 30 or 60 days of 31 July, the shop opening on 1 October
    npd = result["npd"]
    assert npd["served"]["model"] == "btyd_fallback" and "every row is censored" in npd["served"]["reason"]
    assert npd["training_window"]["censored_share"] == 1.0 and npd["models"]["btyd_fallback"]["buyers"] == 80
    assert all(block["mean_p_30d"] < 1e-9 for block in npd["models"].values())


def test_the_next_purchase_backtest_inside_a_closure_with_nothing_to_train_on_serves_the_fallback(store):
    """As of 31 July 2021, in the first closure: the label window before it and the one a year
    earlier hold no purchase, so the AFT cannot train; the backtest serves the BTYD fallback, as
    ml/npd_model registers it, instead of stopping (session 54)."""
    from clv_platform.models.npd import NPDModel
    from clv_platform.models.npd_backtest import run_npd_backtest

    result = run_npd_backtest(store, pd.Timestamp("2021-07-31"), pd.Timestamp("2022-07-31"), aft=NPDModel(n_threads=1))
    assert result["served"]["model"] == "btyd_fallback"
    untrained = ("history too short to train on the 90 days before 2021-07-31 (and the same window a year earlier): "
                 "every row is censored: no purchase was observed in the label window")
    assert result["served"]["reason"] == f"{untrained}: serving the BTYD fallback"
    assert result["aft"] == {"untrained": untrained}
    assert set(result["models"]) == {"naive", "btyd", "btyd_fallback"}
    assert result["models"]["btyd_fallback"]["buyers"] > 0


def test_the_revenue_forecast_of_a_closed_seasons_store_has_none_in_its_closures(store):
    from clv_platform.forecast import revenue

    history = store.assign(order_id=[f"o{i}" for i in range(len(store))])
    forecast = revenue.forecast_revenue(history, date(2024, 1, 31), months=12)
    table = forecast.table
    monthly = table[table["period_kind"] == "month"]
    months = monthly.set_index(pd.to_datetime(monthly["period_start"]))["total_revenue"]
    # February to September 2024 closed: nothing forecast there; October to January hold the year
    closed = months.loc["2024-02":"2024-09"]
    assert len(closed) == 8 and (closed == 0).all()
    assert (months.loc["2024-10":"2025-01"] > 0).all()
    assert forecast.season.closed[3] == ("2024-02-01", "2024-09-30")
    # the year's forecast against what the store sold: within a quarter (+37 % and about 47k a month
    # in its closed months with the yearly harmonics, on the five-season store of MEASUREMENTS)
    dates = pd.to_datetime(store["order_date"])
    actual = float(store.loc[(dates > "2024-01-31") & (dates <= "2025-01-31"), "amount"].sum())
    assert abs(months.sum() / actual - 1) < 0.25
