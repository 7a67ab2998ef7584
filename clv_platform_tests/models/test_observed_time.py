"""The BTYD in observed time: the store's stretches without orders are no days a customer was seen
not to buy, in the fit, the stored scores and the interval keys alike (``features.OBSERVED_COLUMNS``)."""

from datetime import date, timedelta

import duckdb
import numpy as np
import pytest

from clv_platform.models import btyd, btyd_intervals, clv
from clv_platform.models.clv_assets import BTYD_FIT_COLUMNS, write_btyd_scores
from clv_platform.transforms.features import FEATURE_TABLE, materialize_features
from clv_platform_tests.transforms.test_features import Order, build_staging

CUTOFF = date(2024, 5, 31)


@pytest.fixture
def holed_store():
    """Sixty customers buying every few days from January to May 2024 (a third of them stop in
    February), no order at all in March."""
    rng = np.random.default_rng(3)
    orders = []
    for c in range(60):
        day, k = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 20))), 0
        while day <= (date(2024, 2, 20) if c % 3 == 0 else CUTOFF):
            if not date(2024, 3, 1) <= day <= date(2024, 3, 31):
                orders.append(Order(f"o{c}-{k}", f"c{c}", day, float(rng.gamma(3.0, 10.0))))
            day, k = day + timedelta(days=int(rng.integers(2, 9))), k + 1
    conn = duckdb.connect()
    build_staging(conn, orders)
    materialize_features(conn, CUTOFF)
    yield conn
    conn.close()


def test_the_stored_btyd_scores_are_fitted_and_keyed_in_observed_time(holed_store):
    conn = holed_store
    fit_frame = conn.execute(f"select {BTYD_FIT_COLUMNS} from {FEATURE_TABLE} order by customer_id").df()
    model = btyd.fit_btyd(clv.btyd_summary(fit_frame), btyd.MBGNBD)
    write_btyd_scores(conn, model, clv.load_config(), CUTOFF, batch=10**9, chunk=100)
    stored = conn.execute(f"""
        select s.T_weeks * 7 as t, s.recency_weeks * 7 as r, s.p_alive, f.frequency, f.monetary,
               f.T_days, f.first_to_last_order_days, f.observed_T_days, f.observed_recency_days,
               {btyd_intervals.KEY_SQL.replace("frequency", "f.frequency")} as code
        from ml.btyd_scores as s join {FEATURE_TABLE} as f using (customer_id) order by customer_id""").df()
    # every customer's age lost March (31 days) in observed time; the stored weeks are those
    assert ((stored["T_days"] - stored["observed_T_days"]) == 31).all()
    assert np.allclose(stored["t"], stored["observed_T_days"]) and np.allclose(stored["r"], stored["observed_recency_days"])
    # the p_alive is the fitted model's at the observed inputs, not at the calendar ones
    observed = clv.btyd_summary(stored.assign(customer_id=range(len(stored))))
    calendar = clv.btyd_summary(stored.assign(customer_id=range(len(stored)))
                                .drop(columns=["observed_T_days", "observed_recency_days"]))
    assert np.allclose(stored["p_alive"], model.probability_alive(observed))
    assert np.abs(stored["p_alive"] - model.probability_alive(calendar)).max() > 0.005
    # the interval keys (SQL and frame) are of the observed ages: most are other keys than the calendar ones
    assert (stored["code"].to_numpy() == btyd_intervals.frame_keys(stored)).all()
    in_calendar = btyd_intervals.interval_keys(stored["frequency"], stored["first_to_last_order_days"], stored["T_days"])
    assert (in_calendar != stored["code"].to_numpy()).mean() > 0.5


def test_a_drop_stores_btyd_forecasts_its_year_in_calendar_time(monkeypatch):
    """A brand selling on the first four days of each month (benchmarks/awkward_stores.py drops.csv):
    its 24-27 empty days a month are its rhythm, and next year has them too. In calendar time the
    BTYD forecasts the holdout's purchases within 15 % (+10.4 %); read as unobserved days (each month's run
    named, as before session 51) the fit's rate is per drop day and the year is forecast far over."""
    from benchmarks.awkward_stores import drops
    from clv_platform.transforms import order_gaps

    transactions = drops(np.random.default_rng(16))
    cutoff, end = date(2024, 9, 13), date(2025, 9, 4)
    weeks = (end - cutoff).days / 7

    def forecast_error() -> float:
        summary = btyd.summarize(transactions, cutoff, end)
        model = btyd.fit_btyd(summary, btyd.MBGNBD)
        return float(model.expected_purchases(summary, weeks).sum() / summary["holdout_purchases"].sum() - 1)

    in_calendar = forecast_error()
    assert abs(in_calendar) < 0.15
    monkeypatch.setattr(order_gaps, "in_rhythm", lambda gaps, span_days=0: np.zeros(len(gaps), dtype=bool))
    assert forecast_error() > 0.5  # +77 %


def test_a_silence_up_to_the_cutoff_is_unobserved_like_a_stretch_between_orders():
    """The same store with nothing after 30 April, seen at 31 May: no order has ended the 31 days
    yet, so they were counted as days every customer was seen not to buy (the demo store with a
    30-day outage before the cutoff: the BTYD's next six months -29.8 % where they are +3.2 % without
    it, benchmarks/MEASUREMENTS.md, session 52). They are unobserved now, as March is."""
    rng = np.random.default_rng(5)
    orders = []
    for c in range(40):
        day, k = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 15))), 0
        while day <= date(2024, 4, 30):
            orders.append(Order(f"o{c}-{k}", f"c{c}", day, 20.0))
            day, k = day + timedelta(days=int(rng.integers(1, 4))), k + 1
    conn = duckdb.connect()
    build_staging(conn, orders)
    materialize_features(conn, CUTOFF)
    ages = conn.execute(f"select T_days, observed_T_days, first_to_last_order_days, observed_recency_days "
                        f"from {FEATURE_TABLE}").df()
    assert ((ages["T_days"] - ages["observed_T_days"]) == 31).all()
    assert (ages["first_to_last_order_days"] == ages["observed_recency_days"]).all()
    # a week of quiet at the cutoff is no silence to take out
    materialize_features(conn, date(2024, 5, 7))
    ages = conn.execute(f"select T_days, observed_T_days from {FEATURE_TABLE}").df()
    assert (ages["T_days"] == ages["observed_T_days"]).all()
    conn.close()
