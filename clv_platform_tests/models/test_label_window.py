"""The label window a CLV model trains on follows the store's history (``clv.supported_label_window``):
a third of the days since the tenth repeat buyer, at most ``[horizon] label_horizon_days``. The
backtest and production use the one rule, so the backtest measures what a store of that age is
served; ml/btyd_scores computes its label-window columns for the window the served model uses."""

import shutil
from datetime import date
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv, registry
from clv_platform.models.clv_assets import (LabelWindowMismatch, btyd_label_config, registration_gate,
                                            require_label_window)
from clv_platform_tests.models.test_short_history import build_files_store


def _history(rows: list[tuple[str, str, bool, str | None]]) -> duckdb.DuckDBPyConnection:
    """An in-memory staging.order_history of (customer, order day, cancelled, cancelled on), and its orders."""
    conn = duckdb.connect(":memory:")
    conn.execute("create schema staging")
    conn.execute("create table staging.order_history (customer_id varchar, order_date date, is_cancelled boolean, "
                 "cancelled_on date)")
    conn.executemany("insert into staging.order_history values (?, ?, ?, ?)", rows)
    # the store's orders by day, which the rule reads for a closed season (none here)
    conn.execute("create view staging.orders as select customer_id, order_date from staging.order_history")
    return conn


def test_the_window_is_a_third_of_the_days_since_the_tenth_repeat_buyer_point_in_time():
    # ten customers first buy on 2024-01-01; their second purchase days are 2024-01-02 .. 2024-01-11
    rows = [(f"c{i}", "2024-01-01", False, None) for i in range(10)]
    rows += [(f"c{i}", f"2024-01-{2 + i:02d}", False, None) for i in range(10)]
    # two orders of one customer on one day are one purchase day; c9's second day is still 2024-01-11
    rows += [("c9", "2024-01-11", False, None)]
    conn = _history(rows)
    window = clv.supported_label_window(conn, date(2024, 7, 1), 180)
    # (2024-07-01 - 2024-01-11) = 172 days // 3 = 57
    assert (window.days, window.configured, window.ready) == (57, 180, date(2024, 1, 11))
    assert window.note.startswith("57 days, shortened from 180: a third of the 172 days since the history's 10th "
                                  "repeat buyer (2024-01-11)")
    # a long history keeps the configured window
    assert clv.supported_label_window(conn, date(2026, 1, 1), 180) == clv.LabelWindow(180, 180, date(2024, 1, 11),
                                                                                      "180 days")
    # c9's second order cancelled on 2024-02-01: at a cutoff after that only nine customers are repeat buyers
    conn.execute("update staging.order_history set is_cancelled = true, cancelled_on = date '2024-02-01' "
                 "where customer_id = 'c9' and order_date = date '2024-01-11'")
    with pytest.raises(clv.HistoryTooShort, match="only 9 customers bought on two different days by 2024-07-01"):
        clv.supported_label_window(conn, date(2024, 7, 1), 180)
    # ... but at a cutoff before its cancellation the order was live: ten repeat buyers, a short history
    with pytest.raises(clv.HistoryTooShort, match=r"the 10th repeat buyer came on 2024-01-11, 20 days before "
                                                  r"2024-01-31: .* at least 42 days, by 2024-02-22"):
        clv.supported_label_window(conn, date(2024, 1, 31), 180)
    # orders after the cutoff are not known at it
    conn.execute("update staging.order_history set is_cancelled = false, cancelled_on = null")
    conn.execute("insert into staging.order_history values ('c10', '2024-01-01', false, null), "
                 "('c10', '2024-09-01', false, null)")
    assert clv.supported_label_window(conn, date(2024, 7, 1), 180).ready == date(2024, 1, 11)


def test_late_repeat_buyers_are_found_beyond_the_first_spans_read():
    # the first order on 2024-01-01, the repeat buyers' second days in 2024-06 (beyond the 30- and
    # 120-day spans the query reads first) and one earlier repeat buyer on 2024-03-01
    rows = [(f"c{i}", "2024-01-01", False, None) for i in range(12)]
    rows += [(f"c{i}", f"2024-06-{1 + i:02d}", False, None) for i in range(11)] + [("c11", "2024-03-01", False, None)]
    window = clv.supported_label_window(_history(rows), date(2025, 3, 1), 180)
    # the 10th earliest second day: 2024-03-01, then 2024-06-01 .. 2024-06-09
    assert window.ready == date(2024, 6, 9) and window.days == (date(2025, 3, 1) - date(2024, 6, 9)).days // 3


def _young_store_orders(customers: int = 700, days: int = 240, seed: int = 5) -> pd.DataFrame:
    """Eight months of a store: first purchases over the first half, repeat purchases 10-60 days apart."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-06-01")
    rows, order = [], 5000
    for c in range(customers):
        day = start + pd.Timedelta(days=int(rng.integers(0, days // 2)))
        stays = rng.random() < 0.6
        while day < start + pd.Timedelta(days=days):
            rows.append((f"Y{c:04d}", f"O{order}", day.date().isoformat(), round(float(rng.gamma(2.0, 35.0)), 2)))
            order += 1
            if not stays or rng.random() < 0.15:
                break
            day += pd.Timedelta(days=int(rng.integers(10, 60)))
    return pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "amount"])


def _expected_window(orders: pd.DataFrame) -> tuple[int, date]:
    """The rule recomputed from the orders in pandas: (label days, the tenth repeat buyer's second day)."""
    days = orders.assign(day=pd.to_datetime(orders["order_date"])).drop_duplicates(["customer_id", "day"])
    second = days.sort_values("day").groupby("customer_id")["day"].nth(1).sort_values()
    ready = second.iloc[9].date()
    cutoff = pd.to_datetime(orders["order_date"]).max().date()
    return min(180, (cutoff - ready).days // 3), ready


@pytest.fixture(scope="module")
def young_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("young_store")
    mp = pytest.MonkeyPatch()
    orders = _young_store_orders()
    code, assets = build_files_store(mp, tmp, orders, ("ml/clv_model", "ml/btyd_scores", "scores/customer_clv"))
    yield SimpleNamespace(code=code, db=tmp / "files.duckdb", orders=orders, assets=assets, tmp=tmp)
    mp.undo()


def test_a_young_store_trains_on_the_label_window_its_history_supports(young_store):
    assert young_store.code == 0
    days, ready = _expected_window(young_store.orders)
    assert 30 < days < 180
    model_meta, btyd_meta = young_store.assets["ml/clv_model"], young_store.assets["ml/btyd_scores"]
    assert model_meta["label_horizon_days"] == days and btyd_meta["label_horizon_days"] == days
    assert model_meta["label_window"].startswith(f"{days} days, shortened from 180") and str(ready) in model_meta[
        "label_window"]
    # the training run computed ml.btyd_scores' label-window columns for the same window
    assert btyd_meta["label_window"] == model_meta["label_window"]
    # (registry.load_latest creates ml.model_runs if missing: not on a read-only connection)
    with duckdb.connect(str(young_store.db)) as conn:
        windows = conn.execute("select distinct label_horizon_days from ml.btyd_scores").fetchall()
        scored = conn.execute("select count(*) from scores.customer_clv").fetchone()[0]
        model, sidecar = registry.load_latest(conn)
    assert windows == [(days,)] and scored == young_store.orders["customer_id"].nunique()
    assert model.label_horizon_days == days and sidecar["label_horizon_days"] == days
    assert sidecar["serving"]["label_window"] == model_meta["label_window"]
    # a run that does not train computes them for the served model's window
    with duckdb.connect(str(young_store.db)) as conn:
        config, note = btyd_label_config(SimpleNamespace(), conn, date(2026, 6, 1), clv.load_config())
    assert config.label_horizon_days == days
    assert note == f"{days} days: the served model {sidecar['model_version']}'s label window"


def test_scoring_refuses_btyd_inputs_over_another_window_and_the_gate_takes_a_new_window(young_store):
    copy = young_store.tmp / "copy.duckdb"
    shutil.copy(young_store.db, copy)
    days, _ = _expected_window(young_store.orders)
    with duckdb.connect(str(copy)) as conn:
        model, sidecar = registry.load_latest(conn)
        require_label_window(conn, model, sidecar["model_version"])  # the store as built: no complaint
        conn.execute("update ml.btyd_scores set label_horizon_days = 180")
        with pytest.raises(LabelWindowMismatch, match=rf"ml.btyd_scores holds label-window columns over 180 days, the "
                                                      rf"served CLV model {sidecar['model_version']} was trained on "
                                                      rf"{days}-day labels: materialize ml/btyd_scores"):
            require_label_window(conn, model, sidecar["model_version"])
        # a candidate on another window (the store a few weeks older) cannot be compared with the
        # served model on its validation rows: it is registered, and the reason says why
        cutoff = pd.to_datetime(young_store.orders["order_date"]).max().date()
        trained = clv.train_clv(conn, cutoff, clv.load_config().with_label_days(days - 10), clv.HYBRID)
        gate = registration_gate(conn, trained)
    assert gate["register"] is True and gate["served_version"] == sidecar["model_version"]
    assert gate["reason"].startswith(f"served {sidecar['model_version']} was trained on {days}-day labels, this model "
                                     f"on {days - 10}")
