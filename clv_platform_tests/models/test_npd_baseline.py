"""A trained next-purchase model is served only if it earns its place against the BTYD fallback
on the same validation window (``npd_backtest.earns_its_place``); otherwise the fallback is served,
and the trained model is kept unregistered with the reason."""

import json
from types import SimpleNamespace

import duckdb
import pytest

from clv_platform.models import npd_backtest, registry
from clv_platform_tests.models.test_short_history import _orders, build_files_store

BTYD = {"auc_30d": 0.8746, "brier_30d": 0.1238, "auc_90d": 0.8936}
"""The fallback's metrics on the validation window of an Online Retail II-sized store."""


def test_a_model_worse_than_the_btyd_on_either_metric_has_not_earned_its_place():
    # the AFT trained on that store: worse on both (0.8703 < 0.8746, 0.1264 > 0.1238)
    lost = npd_backtest.earns_its_place({"auc_30d": 0.8703, "brier_30d": 0.1264}, BTYD)
    assert not lost["earned"]
    assert [(c["metric"], c["regressed"]) for c in lost["comparisons"]] == [("auc_30d", True), ("brier_30d", True)]
    assert "auc_30d 0.8703 vs BTYD 0.8746" in lost["reason"] and lost["reason"].endswith("serving the BTYD fallback")
    # better ranking, worse calibration: still not served (no margin)
    assert not npd_backtest.earns_its_place({"auc_30d": 0.90, "brier_30d": 0.1239}, BTYD)["earned"]
    won = npd_backtest.earns_its_place({"auc_30d": 0.8746, "brier_30d": 0.12}, BTYD)
    assert won["earned"] and "no worse than the BTYD fallback" in won["reason"]


def test_a_model_that_could_not_be_checked_is_not_served_and_one_without_a_baseline_is():
    unchecked = npd_backtest.earns_its_place({}, BTYD, skipped="need at least 10 training rows, got 0")
    assert not unchecked["earned"]
    assert "could not be checked out of sample (need at least 10 training rows, got 0)" in unchecked["reason"]
    alone = npd_backtest.earns_its_place({"auc_30d": 0.6, "brier_30d": 0.3}, None, "no BTYD baseline (ValueError: x)")
    assert alone["earned"] and alone["reason"] == "served without a comparison: no BTYD baseline (ValueError: x)"


@pytest.fixture(scope="module")
def four_month_store(tmp_path_factory):
    """Four months of orders: enough to train the AFT at C - 90 d, too little for the window before
    it (C - 180 d lies before the first order), so its out-of-sample check is skipped."""
    tmp = tmp_path_factory.mktemp("four_months")
    mp = pytest.MonkeyPatch()
    orders = _orders(repeat=True, customers=400, days=120, seed=3)
    code, assets = build_files_store(mp, tmp, orders, ("ml/npd_model", "scores/customer_npd"))
    yield SimpleNamespace(code=code, db=tmp / "files.duckdb", orders=orders, assets=assets)
    mp.undo()


def test_an_unchecked_trained_model_is_kept_unregistered_and_the_btyd_fallback_served(four_month_store):
    assert four_month_store.code == 0
    meta = four_month_store.assets["ml/npd_model"]
    assert meta["serves"] == "btyd" and meta["registered"] is True
    assert meta["serving_reason"].startswith("the trained model could not be checked out of sample (")
    assert meta["backtest"]["skipped"]
    with duckdb.connect(str(four_month_store.db), read_only=True) as conn:
        runs = conn.execute(
            "select model_version, objective, is_registered, metrics from ml.model_runs where model_name = ? "
            "order by model_version", [registry.NPD_MODEL_NAME]).fetchall()
        scored = conn.execute("select count(*), count(distinct customer_id), max(model_version) "
                              "from scores.customer_npd").fetchone()
        customers = conn.execute("select count(*) from staging.customers").fetchone()[0]
    (trained, trained_objective, trained_registered, _), (fallback, objective, registered, metrics) = runs
    assert trained == meta["trained_version_refused"] and trained_objective != "btyd_only" and not trained_registered
    assert (fallback, objective, registered) == (meta["model_version"], "btyd_only", True)
    assert 0.5 < json.loads(metrics)["auc_30d"] <= 1.0  # the fallback's own metrics on the window
    assert scored == (customers, customers, fallback)
    assert four_month_store.assets["scores/customer_npd"]["serves"] == "btyd"


def test_the_btyd_timing_baseline_is_an_mbg_nbd_where_the_bg_nbd_does_not_converge(monkeypatch):
    """A store where nobody stops buying: the next-purchase backtest fitted its BTYD timing baseline
    as a BG/NBD, which converges there at no penalizer, and the whole backtest exited with "The
    model did not converge". The MBG/NBD (the same timing formulas) is fitted instead and the result
    says so; where the BG/NBD converges it is the baseline as before."""
    from datetime import date

    import pandas as pd

    from clv_platform.backtest_cli import _params_text
    from clv_platform.models import btyd
    from clv_platform_tests.no_churn import bgnbd_never_converges, no_churn_transactions

    tx = no_churn_transactions()
    tx["order_date"] = pd.to_datetime(tx["order_date"])
    cutoff = date(2023, 1, 31)
    summary = btyd.summarize(tx[tx["order_date"] <= pd.Timestamp(cutoff)], cutoff)
    with monkeypatch.context() as patch:
        bgnbd_never_converges(patch)
        model, note = npd_backtest.timing_fit(summary)
    assert model.model == btyd.MBGNBD and note["family"] == btyd.MBGNBD
    assert note["reason"].startswith("bgnbd did not converge at any penalizer (The model did not converge.")
    young = btyd.summarize(tx[tx["order_date"] <= pd.Timestamp("2022-06-30")], date(2022, 6, 30))
    model, note = npd_backtest.timing_fit(young)
    assert model.model == btyd.BGNBD and note == {"family": btyd.BGNBD, "penalizer": model.penalizer, "reason": "fitted"}
    # the backtest's text names a family it could not fit instead of failing on its missing parameters
    assert _params_text("BG/NBD", dict.fromkeys(("r", "alpha", "a", "b"))) == "BG/NBD not fitted"
    assert _params_text("Gamma-Gamma", {"p": 6.25, "q": 3.74, "v": 15.44}) == "Gamma-Gamma p=6.25, q=3.74, v=15.44"
