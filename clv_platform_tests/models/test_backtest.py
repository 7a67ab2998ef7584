"""Backtest core on the CDNOW sample: JSON shape, model comparison, extension hook, HTML report."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from clv_platform.models import backtest, btyd, lifecycle, metrics, segments, total_interval
from clv_platform.models.datasets import CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END, load_cdnow_sample


@pytest.fixture(scope="module")
def run():
    return backtest.btyd_backtest("cdnow-sample")


def test_result_shape_and_published_figures(run):
    result = run.result
    json.dumps(result, allow_nan=False)
    assert result["dataset"] == "cdnow-sample"
    assert result["customers"] == 2357
    sections = ("bgnbd", "pareto_nbd", "gamma_gamma", "holdout", "deciles", "per_stage", "purchases_by_x", "cumulative")
    assert set(sections) <= set(result)
    assert result["calibration_repeat_transactions"] == 2457
    assert result["holdout_transactions"] == 1882
    assert result["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert result["bgnbd"]["predicted_holdout_purchases"] == pytest.approx(1653, abs=1)
    assert result["cumulative"]["totals"]["actual"] == 4339
    assert set(result["holdout"]["models"]) == {"naive", "btyd"}
    for block in result["holdout"]["models"].values():
        assert set(block) == {"mae", "rmse", "spearman", "normalized_gini", "predicted_total"}
    assert result["holdout"]["actual_total"] == pytest.approx(run.summary["holdout_spend"].sum())
    assert len(result["deciles"]["btyd"]) == 10
    interval = result["intervals"]["btyd"]
    assert interval["level"] == pytest.approx(0.8)
    assert 0.7 <= interval["customer_coverage"] <= 0.95
    assert interval["customer_coverage"] == pytest.approx(1 - interval["below_p10"] - interval["above_p90"])
    # the atom at 0 lifts what the model expects above 80 %; the CDNOW holdout is close to it
    assert 0.8 < interval["customer_model_coverage"] < 0.95
    assert abs(interval["customer_coverage"] - interval["customer_model_coverage"]) < 0.05
    assert interval["total_p10"] < result["holdout"]["models"]["btyd"]["predicted_total"] < interval["total_p90"]
    assert isinstance(interval["total_covered"], bool)
    assert set(result["per_stage"]) <= set(backtest.STAGES)
    # parameter uncertainty: 20 BTYD refits on customer resamples spread the total a few per cent
    # (2,357 customers) and widen the total's interval beyond the customer-noise-only one
    boot = result["parameter_bootstrap"]
    assert boot["replicates"] == 20 and boot["failed"] == 0 and boot["family"] == result["btyd_model"]
    assert 0.005 < boot["cv"] < 0.2 and boot["factor_p10"] < 1.0 < boot["factor_p90"]
    assert interval["parameter_uncertainty"] is True
    assert interval["total_p10"] < interval["total_p10_process"] and interval["total_p90"] > interval["total_p90_process"]


def test_total_draws_pair_customer_noise_with_parameter_factors():
    draws = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]])
    ratio = np.array([1.0, 2.0])
    assert backtest.total_draws(draws, ratio).tolist() == [7.0, 10.0, 10.0]
    assert backtest.total_draws(draws, ratio, np.empty(0)).tolist() == [7.0, 10.0, 10.0]
    assert backtest.total_draws(draws, ratio, np.array([0.5])).tolist() == [3.5, 5.0, 5.0]
    scaled = backtest.total_draws(draws, ratio, np.array([0.5, 2.0]), seed=3)
    assert all(value in (t * 0.5, t * 2.0) for value, t in zip(scaled, [7.0, 10.0, 10.0]))


def test_btyd_beats_naive_on_errors(run):
    models = run.result["holdout"]["models"]
    assert models["btyd"]["mae"] < models["naive"]["mae"]
    assert models["btyd"]["rmse"] < models["naive"]["rmse"]
    btyd_total = models["btyd"]["predicted_total"]
    assert btyd_total == pytest.approx(
        (run.frame["btyd_expected_purchases"] * run.frame["btyd_expected_aov"]).sum()
    )


def test_naive_prediction_is_spend_rate_times_holdout():
    """Spend per calendar week since the first purchase (floored at a week), whatever the summary's
    observed-time T says (here a stretch without orders took 4 weeks out of the first customer's)."""
    summary = pd.DataFrame({"calibration_spend": [39.0, 10.0], "T": [9.0, 0.0], "calendar_T": [13.0, 0.0]})
    assert backtest.naive_prediction(summary, 39.0).tolist() == pytest.approx([117.0, 390.0])


def test_backtest_stages_are_the_production_lifecycle_rule():
    """The backtest groups by ``lifecycle.lifecycle_stages`` (what segments assign), not a rule of its own.

    Weeks -> days: tenure = 7 T, days since last = 7 (T - recency), mean interval = 7 recency / x.
    Pooled interval of the repeat buyers = (210 + 35 + 140) / (3 + 3 + 2) = 48.125 days.
    """
    summary = pd.DataFrame(
        {"frequency": [0, 0, 3, 3, 2], "recency": [0.0, 0.0, 30.0, 5.0, 20.0], "T": [5.0, 60.0, 35.0, 35.0, 30.0]},
        index=["new", "old_one_timer", "steady", "lapsed", "on_cadence"],
    )
    features = lifecycle.features_from_summary(summary)
    assert features.loc["steady"].tolist() == pytest.approx([245.0, 35.0, 70.0, 3.0])
    assert np.isnan(features.loc["old_one_timer", "mean_interpurchase_days"])
    ratio = lifecycle.cadence_ratio(features)
    assert ratio["old_one_timer"] == pytest.approx(420.0 / 48.125)
    assert ratio["lapsed"] == pytest.approx(210.0 / (35.0 / 3.0))
    # new (35 days <= 90), one-timer 8.7 intervals silent (churned), 0.5 (active), 18 (churned), 1.0 (active)
    assert lifecycle.stages_from_summary(summary).tolist() == ["new", "churned", "active", "churned", "active"]
    # a low p_alive alone is enough for at_risk (< 0.5) / churned (< 0.2); new stays new; the
    # cadence's churned needs the model's agreement (p_alive < 0.5): the two at 0.9 are at risk
    p_alive = [0.1, 0.9, 0.3, 0.9, 0.1]
    assert lifecycle.stages_from_summary(summary, p_alive=p_alive).tolist() == [
        "new", "at_risk", "at_risk", "at_risk", "churned"]
    assert segments.lifecycle_stages is lifecycle.lifecycle_stages and backtest.STAGES == segments.STAGES


def test_extra_predictions_are_merged_and_evaluated(run):
    frame = run.frame
    perfect = frame["actual"].iloc[:-5]
    result = backtest.run_btyd_backtest("cdnow-sample", extra_predictions={"oracle": perfect}, bootstrap_replicates=0)
    oracle = result["holdout"]["models"]["oracle"]
    expected = metrics.regression_metrics(frame["actual"], perfect.reindex(frame.index).fillna(0.0))
    assert oracle["mae"] == pytest.approx(expected["mae"])
    assert oracle["normalized_gini"] == pytest.approx(expected["normalized_gini"])
    assert "oracle" in result["deciles"] and "oracle" in result["per_stage"]["churned"]
    sections = backtest.evaluate_frame(frame.assign(oracle=frame["actual"]), ["btyd", "oracle"])
    assert sections["holdout"]["models"]["oracle"]["mae"] == 0.0


def test_csv_dataset_matches_named_dataset(tmp_path, run):
    path = tmp_path / "cdnow.csv"
    load_cdnow_sample().to_csv(path, index=False)
    with pytest.raises(ValueError):
        backtest.run_btyd_backtest(path)
    result = backtest.run_btyd_backtest(path, CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END, model_choice="auto",
                                        bootstrap_replicates=0)
    assert result["dataset"] == "cdnow"
    # auto: MBG/NBD (-9582.1) beats Pareto/NBD (-9595.0) on the calibration likelihood of the sample
    assert result["btyd_model"] == "mbgnbd"
    assert result["btyd_selection"]["chosen"] == "mbgnbd"
    assert "highest calibration log-likelihood" in result["btyd_selection"]["reason"]
    assert {row["family"] for row in result["btyd_selection"]["candidates"]} == {"pareto_nbd", "mbgnbd"}
    np.testing.assert_allclose(
        list(result["bgnbd"]["params"].values()), list(run.result["bgnbd"]["params"].values()), rtol=1e-9
    )


def test_invalid_model_choice():
    with pytest.raises(ValueError):
        backtest.run_btyd_backtest("cdnow-sample", model_choice="xgboost")


def test_render_report_html(tmp_path, run):
    path = backtest.render_report_html(run.result, tmp_path / "report" / "backtest.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    svgs = [chunk.split("</svg>")[0] + "</svg>" for chunk in text.split("<svg")[1:]]
    assert len(svgs) == 1 + len(run.result["deciles"])
    for svg in svgs:
        ET.fromstring("<svg" + svg)
    assert "7+" in text and "4,339" in text


def test_point_forecast_columns_keep_their_interval_around_the_mean(run):
    """A point column mapped to its mean column gets the mean's interval and the share inside it."""
    frame = run.frame
    mean = frame["btyd"]
    point = pd.Series(np.where(mean > mean.median(), 2.0 * mean, 0.0), index=frame.index)
    result = backtest.btyd_backtest("cdnow-sample", extra_predictions={"point": point, "point_mean": mean},
                                    mean_columns={"point": "point_mean"}, bootstrap_replicates=0).result
    with_mean, own = result["intervals"]["point"], result["intervals"]["point_mean"]
    assert with_mean["total_p10"] == pytest.approx(own["total_p10"])
    assert with_mean["customer_coverage"] == pytest.approx(own["customer_coverage"])
    assert "point_within_interval" not in own
    draws = run.models[result["btyd_model"]].sample_spend(run.summary, result["window"]["holdout_weeks"],
                                                           backtest.INTERVAL_DRAWS)
    low, high = backtest.customer_intervals(draws)
    inside = ((point.to_numpy() >= low - 1e-9) & (point.to_numpy() <= high + 1e-9)).mean()
    assert with_mean["point_within_interval"] == pytest.approx(float(inside))
    # a mean that is no model column of its own (the served model's, in season): the same interval
    # around it, and it is not evaluated as a model
    seasonal = 1.3 * mean
    hidden = backtest.btyd_backtest("cdnow-sample", extra_predictions={"point": point, "seasonal": seasonal},
                                    mean_series={"seasonal_mean": seasonal}, bootstrap_replicates=0,
                                    mean_columns={"point": "seasonal_mean"}).result
    assert "seasonal_mean" not in hidden["intervals"] and "seasonal_mean" not in hidden["holdout"]["models"]
    centred, own = hidden["intervals"]["point"], hidden["intervals"]["seasonal"]
    assert centred["total_p10"] == pytest.approx(own["total_p10"]) and centred["total_p90"] == pytest.approx(
        own["total_p90"])
    assert centred["total_p10"] == pytest.approx(1.3 * with_mean["total_p10"])
    assert centred["customer_coverage"] == pytest.approx(own["customer_coverage"])


def test_coverage_summary_tells_bias_from_noise():
    def row(actual, low, high, predicted=100.0):
        side = "inside" if low <= actual <= high else ("above" if actual > high else "below")
        return {"evaluated": True, "predicted_total": predicted, "actual_total": actual, "total_p10": low,
                "total_p90": high, "covered": side == "inside", "side": side, "total_error": predicted / actual - 1}

    # three misses above, errors about -17 % against a half width of 5 %: bias
    biased = backtest.coverage_summary([row(120, 95, 105), row(121, 95, 105), row(119, 95, 105), row(101, 95, 105),
                                        {"evaluated": False, "reason": "no repeat purchases"}])
    assert biased["evaluated"] == 4 and biased["coverage"] == pytest.approx(0.25)
    assert (biased["misses_above"], biased["misses_below"]) == (3, 0)
    assert biased["mean_relative_half_width"] == pytest.approx(0.05)
    assert biased["diagnosis"].startswith("bias")
    # misses on both sides, small errors: noise
    noisy = backtest.coverage_summary([row(106, 95, 105), row(94, 95, 105), row(100, 95, 105), row(102, 95, 105)])
    assert noisy["coverage"] == pytest.approx(0.5) and noisy["diagnosis"].startswith("noise")
    assert backtest.coverage_summary([])["coverage"] is None


def test_rolling_total_coverage_on_the_cdnow_sample():
    """Four 91-day windows, each holdout ending by the next calibration end: the last one has three
    earlier errors for its bias term, the first none. MBG/NBD only: the windows and the bias term
    are the subject here (up to 15 fits), the auto family choice has its own tests."""
    transactions = load_cdnow_sample()
    ends = [pd.Timestamp(d) for d in ("1997-06-30", "1997-09-29", "1997-12-29", "1998-03-30")]
    result = backtest.rolling_total_coverage(transactions, ends, 91, model_choice=btyd.MBGNBD, replicates=2)
    json.dumps(backtest.json_safe(result), allow_nan=False)
    rows = result["windows"]
    assert [r["calibration_end"] for r in rows] == [d.date().isoformat() for d in ends]
    for end, r in zip(ends, rows):
        assert r["evaluated"] and r["btyd_model"] == "mbgnbd"
        known = transactions[transactions["order_date"] <= end]["customer_id"].unique()
        later = transactions[(transactions["order_date"] > end)
                             & (transactions["order_date"] <= end + pd.Timedelta(days=91))
                             & transactions["customer_id"].isin(known)]
        assert r["actual_total"] == pytest.approx(later["amount"].sum())
        assert r["customers"] == len(known)
        assert r["covered"] == (r["total_p10"] <= r["actual_total"] <= r["total_p90"])
        assert r["total_error"] == pytest.approx(r["predicted_total"] / r["actual_total"] - 1.0)
    # the bias term's validation windows end their holdout by the calibration end, 30-day steps back
    # from C - 91, each with 91 days of history after 1997-01-01: none at 1997-06-30, three at
    # 1997-09-29 (06-30, 05-31, 05-01), four later
    assert [r.get("bias_windows") for r in rows] == [None, 3, 4, 4]
    for r in rows[1:]:
        # the symmetric variant only widens the interval; the signed one shifts it as well
        assert r["symmetric_p10"] < r["total_p10"] and r["symmetric_p90"] > r["total_p90"]
        assert r["adjusted_p90"] - r["adjusted_p10"] > r["total_p90"] - r["total_p10"]
    # each error is log(actual / predicted) of the same BTYD fitted at a validation end (point in time)
    last = rows[-1]
    v_end = ends[-1] - pd.Timedelta(days=91)
    summary = btyd.summarize(transactions[transactions["order_date"] <= ends[-1]], v_end, ends[-1])
    v_pred = btyd.fit_btyd(summary, btyd.MBGNBD).score(summary, 13.0)["expected_spend"].sum()
    assert last["bias_log_errors"][0] == pytest.approx(np.log(summary["holdout_spend"].sum() / v_pred))
    assert result["coverage"] == pytest.approx(np.mean([r["covered"] for r in rows]))
    assert result["adjusted_evaluated"] == 3
    assert result["adjusted_coverage"] == pytest.approx(np.mean([r["adjusted_covered"] for r in rows[1:]]))
    assert "validation windows" in result["bias_term"]
    assert result["misses_above"] + result["misses_below"] == sum(not r["covered"] for r in rows)
    # the served rule: the BTYD's errors on the label windows ending at C and C - 91 (features at
    # C - 91 and C - 182, each with 91 days of history): none at 06-30 (process only), one at 09-29
    assert [r["served_windows"] for r in rows] == [0, 1, 2, 2]
    assert rows[0]["served_total_rule"].startswith("process only")
    assert (rows[0]["served_total_p10"], rows[0]["served_total_p90"]) == (
        rows[0]["served_total_process_p10"], rows[0]["served_total_process_p90"])
    # the last window's served errors are those of the windows calibrated at 1997-12-29 and 09-29
    assert last["served_total_log_errors"] == pytest.approx(
        [np.log(r["actual_total"] / r["predicted_total"]) for r in (rows[2], rows[1])])
    for r in rows[1:]:
        assert r["served_total_p10"] < r["served_total_process_p10"] and r["served_total_p90"] > r["served_total_process_p90"]
        assert r["served_total_covered"] == (r["served_total_p10"] <= r["actual_total"] <= r["served_total_p90"])
    assert result["served_evaluated"] == 4 and result["served_with_errors"] == 3
    assert result["served_coverage"] == pytest.approx(np.mean([r["served_total_covered"] for r in rows]))


def test_coverage_window_ends_step_back_from_the_last_full_holdout():
    transactions = pd.DataFrame({"customer_id": ["a", "b"], "order_date": pd.to_datetime(["2020-01-01", "2020-12-31"]),
                                 "amount": [1.0, 2.0]})
    ends = backtest.coverage_window_ends(transactions, 91, step_days=30, limit=3)
    assert ends == [pd.Timestamp("2020-08-02"), pd.Timestamp("2020-09-01"), pd.Timestamp("2020-10-01")]
    # history must be at least the holdout long: 2020-04-01 is the earliest end
    assert min(backtest.coverage_window_ends(transactions, 91, limit=100)) >= pd.Timestamp("2020-04-01")
    assert backtest.coverage_window_ends(transactions.iloc[:0], 91) == []


def test_backtest_served_total_interval_fields():
    rng = np.random.default_rng(3)
    draws = rng.gamma(0.5, 20.0, size=(400, 200))
    actual = draws[:, 0] * 1.3
    ratio = np.ones(400)
    mean_total = float(draws.mean(axis=1).sum())
    out = backtest.interval_metrics(actual, draws, ratio, served=([0.2, 0.1], None), mean_total=mean_total,
                                    horizon_ratio=3.0)
    low, high = backtest.customer_intervals(draws)
    base = total_interval.process_interval(mean_total, total_interval.customer_variance(low, high))
    expected = total_interval.widen(mean_total, *base, [0.2, 0.1], 3.0)
    assert out["served_total_p10"] == pytest.approx(expected["p10"]) and out["served_total_p90"] == pytest.approx(expected["p90"])
    assert (out["served_total_process_p10"], out["served_total_process_p90"]) == pytest.approx(base)
    assert out["served_total_covered"] == (out["served_total_p10"] <= actual.sum() <= out["served_total_p90"])
    assert out["served_total_process_covered"] == (base[0] <= actual.sum() <= base[1])
    assert out["served_total_relative_width"] == pytest.approx((expected["p90"] - expected["p10"]) / mean_total)
    # the process-only base is the draws' own interval to within the normal approximation (2 % here:
    # the sd read off a skewed customer's P10-P90 is short of its true sd)
    assert base[0] == pytest.approx(out["total_p10_process"], rel=0.05)
    assert "served_total_p10" not in backtest.interval_metrics(actual, draws, ratio)


def test_own_interval_mass_counts_the_atom_at_zero():
    """A closed P10-P90 holds all of an atom at 0: the model itself expects more than 80 % coverage
    from customers likely not to buy, and exactly 100 % from one who cannot."""
    rng = np.random.default_rng(3)
    n = 1000
    continuous = rng.permutation(np.arange(1.0, n + 1.0))            # no atom: 80 % (801 of 1000 draws)
    atom = np.where(np.arange(n) < 300, 0.0, np.arange(n) + 1.0)     # 30 % zeros, then distinct values
    draws = np.vstack([continuous, atom, np.zeros(n)])
    ratio = np.array([1.0, 2.0, 1.0])                                # a model mean twice the BTYD's
    low, high = backtest.customer_intervals(draws, ratio)
    own = [backtest.own_interval_mass(draws[[i]], ratio[[i]], low[[i]], high[[i]]) for i in range(3)]
    assert own[0] == pytest.approx(0.80, abs=0.002)
    # zeros (300) plus the positive draws up to the P90 (900 - 300 = 600 of them, the P90 itself on a draw)
    assert low[1] == 0.0 and own[1] == pytest.approx(0.90, abs=0.002)
    assert own[2] == 1.0
    assert backtest.own_interval_mass(draws, ratio, low, high) == pytest.approx(np.mean(own))
    actual = np.array([500.0, 0.0, 0.0])
    result = backtest.interval_metrics(actual, draws, ratio)
    assert result["customer_model_coverage"] == pytest.approx(np.mean(own))
    assert result["customer_coverage"] == 1.0
