"""p_alive where the BTYD's memoryless purchasing is wrong: a subscription store (every 30 days
until the subscriber cancels). The BTYD kept a cancelled subscriber 80 days past their cadence at
p_alive 0.6 and 'at_risk', while the trained next-purchase model (served: it beat the BTYD's timing)
and the hybrid CLV said they would not buy again."""

import json
import warnings
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.backtest_cli import json_view, run_backtest
from clv_platform.models import btyd, clv
from clv_platform.models.clv_assets import alive_evidence
from clv_platform.models.npd_backtest import paired_brier
from clv_platform_tests.cheap_config import files_store_run

END = pd.Timestamp("2024-12-30")


def subscription_export(customers: int = 700, seed: int = 11) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Subscribers who buy every 30 (+-2) days from a start in 2023-2024 until they cancel (an
    exponential life of 400 days mean); returns the rows and who is still subscribed at ``END``."""
    rng = np.random.default_rng(seed)
    rows, subscribed = [], {}
    for c in range(customers):
        t = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 500)))
        first, life, price = t, rng.exponential(400), float(rng.choice([29.0, 49.0, 99.0]))
        while t <= END and (t - first).days < life:
            rows.append((f"S{c}", t.date().isoformat(), price))
            t = t + pd.Timedelta(days=int(round(30 + rng.normal(0, 2))))
        subscribed[f"S{c}"] = t > END
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]), subscribed


@pytest.fixture(scope="module")
def subscription_store(tmp_path_factory):
    export, subscribed = subscription_export()
    with files_store_run(tmp_path_factory.mktemp("subscription_store"),
                         lambda inbox: export.to_csv(inbox / "subscriptions.csv", index=False), "USD") as store:
        yield SimpleNamespace(code=store.code, db=store.db, subscribed=subscribed)


def test_cancelled_subscribers_are_not_kept_alive_by_the_btyd(subscription_store):
    assert subscription_store.code == 0
    with duckdb.connect(str(subscription_store.db), read_only=True) as conn:
        served = conn.execute("select objective from ml.model_runs where model_name = 'npd_aft' and is_registered "
                              "order by trained_at desc limit 1").fetchone()[0]
        frame = conn.execute("""
            select m.customer_id, m.as_of_date - m.last_order_date as silent_days, m.p_alive, m.lifecycle_stage,
                   m.expected_purchases, b.p_alive as btyd_p_alive, b.expected_purchases as btyd_expected_purchases
            from marts.customer_scores m join ml.btyd_scores b using (customer_id)""").df()
    assert served != "btyd_only"  # the trained model beat the BTYD's timing on this store
    frame["subscribed"] = frame["customer_id"].str.removeprefix("import:").map(subscription_store.subscribed)
    # two missed cycles: every one of them has cancelled
    lapsed = frame[frame["silent_days"].between(61, 150)]
    assert len(lapsed) >= 10 and not lapsed["subscribed"].any()
    # the BTYD alone still calls most of them probably alive ...
    assert lapsed["btyd_p_alive"].mean() > 0.3
    # ... the served p_alive does not, their stage says so, and the expected purchases follow p_alive
    assert lapsed["p_alive"].max() < 0.05
    assert set(lapsed["lifecycle_stage"]) == {"churned"}
    ratio = lapsed["expected_purchases"] / lapsed["btyd_expected_purchases"]
    np.testing.assert_allclose(ratio, lapsed["p_alive"] / lapsed["btyd_p_alive"], rtol=1e-9)
    # subscribers inside their cycle keep the BTYD's p_alive (never raised, and not lowered here)
    current = frame[frame["silent_days"] <= 25]
    assert current["subscribed"].mean() > 0.95
    assert (current["p_alive"] <= current["btyd_p_alive"] + 1e-12).all()
    assert (current["p_alive"] > 0.5).mean() > 0.95
    # against who is really still subscribed, the served p_alive is the better probability
    truth = frame["subscribed"].astype(float)
    assert ((frame["p_alive"] - truth) ** 2).mean() < 0.5 * ((frame["btyd_p_alive"] - truth) ** 2).mean()
    # the revenue forecast's expected purchases of the existing customers add up to the scores'
    with duckdb.connect(str(subscription_store.db), read_only=True) as conn:
        forecast = conn.execute("select existing_expected_purchases from marts.revenue_forecast "
                                "where period = '365d'").fetchone()[0]
        scored, btyd = conn.execute("select sum(c.expected_purchases), sum(b.expected_purchases) "
                                    "from scores.customer_clv c join ml.btyd_scores b using (customer_id)").fetchone()
    assert scored < 0.95 * btyd
    assert forecast == pytest.approx(scored, rel=0.01)


def test_only_a_model_better_beyond_noise_and_scores_of_this_cutoff_lower_p_alive(subscription_store, tmp_path):
    db = tmp_path / "copy.duckdb"
    db.write_bytes(subscription_store.db.read_bytes())
    with duckdb.connect(str(db)) as conn:
        cutoff = conn.execute("select distinct cutoff from scores.customer_npd").fetchone()[0]
        served = "model_name = 'npd_aft' and is_registered"
        metrics = json.loads(conn.execute(f"select metrics from ml.model_runs where {served}").fetchone()[0])
        # the trained model's 90-day Brier gain over the BTYD on its validation window, paired
        assert metrics["alive_evidence"] == 1
        assert metrics["brier_90d_gain_over_btyd"] > 1.645 * metrics["brier_90d_gain_over_btyd_se"] > 0
        model, why = alive_evidence(conn, cutoff)
        assert model is not None and why.startswith("reconciled with P(purchase within 90 days)")
        conn.execute("update scores.customer_npd set cutoff = cutoff - 1")
        model, why = alive_evidence(conn, cutoff)
        assert model is None and "not " + str(cutoff) in why and "materialize scores/customer_npd" in why
        conn.execute("update scores.customer_npd set cutoff = cutoff + 1")
        conn.execute(f"update ml.model_runs set metrics = ? where {served}",
                     [json.dumps({**metrics, "alive_evidence": 0})])
        model, why = alive_evidence(conn, cutoff)
        assert model is None and "not better than the BTYD at 90 days beyond noise" in why


def test_a_served_btyd_clv_follows_the_lowered_p_alive(subscription_store, tmp_path):
    """With the BTYD served, its spend is P(alive) x E[spend | alive]: the CLV, its point and interval
    scale with the p_alive the next-purchase model lowered, as the expected purchases do."""
    from dataclasses import replace

    from clv_platform.models import registry
    from clv_platform.models.clv_assets import write_clv_scores
    from clv_platform.transforms.cutoff import scoring_cutoff

    db = tmp_path / "copy.duckdb"
    db.write_bytes(subscription_store.db.read_bytes())
    config = clv.load_config()
    with duckdb.connect(str(db)) as conn:
        model, _ = registry.load_latest(conn)
        alive, _ = alive_evidence(conn, scoring_cutoff(conn))
        assert alive is not None
        btyd_model = replace(model, serves_btyd=True)
        plain = write_clv_scores(conn, btyd_model, config, "v", pd.Timestamp("2025-01-01"), 10_000)
        before = conn.execute("select customer_id, predicted_clv, predicted_clv_p90, p_alive, expected_purchases "
                              "from scores.customer_clv order by customer_id").df()
        served = write_clv_scores(conn, btyd_model, config, "v", pd.Timestamp("2025-01-01"), 10_000, alive=alive)
        after = conn.execute("select customer_id, predicted_clv, predicted_clv_p90, p_alive, expected_purchases "
                             "from scores.customer_clv order by customer_id").df()
        # the hybrid's own CLV is left as it is
        write_clv_scores(conn, replace(model, serves_btyd=False), config, "v", pd.Timestamp("2025-01-01"), 10_000)
        hybrid = conn.execute("select predicted_clv from scores.customer_clv order by customer_id").df()
        write_clv_scores(conn, replace(model, serves_btyd=False), config, "v", pd.Timestamp("2025-01-01"), 10_000,
                         alive=alive)
        hybrid_reconciled = conn.execute("select predicted_clv from scores.customer_clv order by customer_id").df()
    assert plain["alive"] is None and served["alive"]["lowered"] > 10
    ratio = np.where(before["p_alive"] > 0, after["p_alive"] / before["p_alive"], 1.0)
    assert (ratio < 0.5).sum() >= 10
    np.testing.assert_allclose(after["predicted_clv"], before["predicted_clv"] * ratio, rtol=1e-6, atol=0.011)
    np.testing.assert_allclose(after["predicted_clv_p90"], before["predicted_clv_p90"] * ratio, rtol=1e-6, atol=0.011)
    np.testing.assert_allclose(after["expected_purchases"], before["expected_purchases"] * ratio, rtol=1e-9)
    assert served["alive"]["btyd_clv_sum"] == pytest.approx(before["predicted_clv"].sum(), rel=1e-4)
    assert served["alive"]["clv_sum"] == pytest.approx(after["predicted_clv"].sum(), rel=1e-4)
    np.testing.assert_allclose(hybrid_reconciled["predicted_clv"], hybrid["predicted_clv"], rtol=1e-9)


def test_alive_scale_only_lowers_and_keeps_what_it_cannot_judge():
    scale = clv.alive_scale([0.8, 0.5, 0.0, np.nan, 0.4], [0.2, 0.5, 0.0, 0.3, 0.6])
    np.testing.assert_allclose(scale, [0.25, 1.0, 1.0, 1.0, 1.0])


def test_paired_brier_gain_needs_to_be_beyond_noise():
    rng = np.random.default_rng(0)
    days = np.where(rng.random(4000) < 0.3, rng.integers(1, 200, 4000), np.nan).astype(float)
    bought = (days <= 90).astype(float)
    sharp = np.clip(bought * 0.8 + 0.1, 0, 1)  # knows who buys within 90 days
    vague = np.full(days.size, bought.mean())
    better = paired_brier(days, sharp, vague, window_days=200)
    assert better["alive_evidence"] == 1
    np.testing.assert_allclose(better["brier_90d_gain_over_btyd"],
                               np.mean((vague - bought) ** 2) - np.mean((sharp - bought) ** 2))
    # the same probabilities up to noise: no evidence
    noisy = np.clip(vague + rng.normal(0, 1e-3, days.size), 0, 1)
    assert paired_brier(days, noisy, vague, window_days=200)["alive_evidence"] == 0
    # a 60-day window does not know who bought within 90 days: no evidence either way
    assert paired_brier(np.where(days <= 60, days, np.nan), sharp, vague, window_days=60) == {}


def test_reconcile_alive_only_lowers_and_keeps_what_it_cannot_judge():
    alive, purchases = np.array([0.8, 0.8, 0.3, 0.6, 0.9]), np.array([4.0, 4.0, 1.0, 2.0, 5.0])
    p_purchase = np.array([0.08, 0.9, 0.2, np.nan, 0.1])
    if_alive = np.array([0.8, 0.9, 0.4, 0.5, 0.0])
    served, scaled = clv.reconcile_alive(alive, purchases, p_purchase, if_alive)
    # 0.08 / 0.8 = 0.1 < 0.8: lowered, purchases scaled by 0.1 / 0.8; 0.9 / 0.9 = 1 > 0.8 and
    # 0.2 / 0.4 = 0.5 > 0.3: kept (never raised); no probability or no chance if alive: kept
    np.testing.assert_allclose(served, [0.1, 0.8, 0.3, 0.6, 0.9])
    np.testing.assert_allclose(scaled, [0.5, 4.0, 1.0, 2.0, 5.0])


def test_the_backtest_judges_stages_on_the_p_alive_production_serves(tmp_path):
    export, _ = subscription_export()
    path = tmp_path / "subscriptions.csv"
    export.to_csv(path, index=False)
    view = json_view(run_backtest(str(path), with_npd=True)[0])
    evidence = view["npd"]["alive_evidence"]
    assert evidence["alive_evidence"] == 1 and evidence["brier_90d_gain_over_btyd"] > 0
    assert view["npd"]["p_alive"].startswith("lowered for ")
    # a served BTYD's forecast would follow that p_alive (as scores/customer_clv writes it); a served
    # hybrid's CLV is its own
    reconciled = view["npd"]["served_clv_reconciled"]
    if view["serving"]["served"] == "btyd":
        assert reconciled["applies"] and reconciled["customers_scaled"] > 0
        assert reconciled["predicted_total"] < reconciled["predicted_total_before"]
    else:
        assert reconciled == {"applies": False, "reason": "the hybrid is served: its CLV is its own"}
    stages = view["per_stage"]
    active = stages["active"]["actual_mean"]
    # the churned buy (next to) nothing in the holdout; no stage that is not churned is a group of
    # customers who all stopped (on the BTYD's p_alive alone 58 of them were 'at_risk' here, none of whom bought)
    assert stages["churned"]["customers"] > 100 and stages["churned"]["actual_mean"] < 0.02 * active
    for name in ("active", "at_risk", "new"):
        if stages.get(name, {}).get("customers", 0) >= 10:
            assert stages[name]["actual_mean"] > 0.1 * active, name


def test_the_family_choice_prints_no_numpy_warning_on_a_regular_store():
    # lifetimes' Pareto/NBD likelihood turns NaN here (logaddexp of -inf terms); the choice treats that
    # as a degenerate fit, and `clv-platform files` printed eight RuntimeWarnings for it
    export, _ = subscription_export()
    export["order_date"] = pd.to_datetime(export["order_date"])
    summary = btyd.summarize(export, END)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = btyd.fit_auto(summary)
    assert model.model == btyd.MBGNBD
