"""`clv-platform backtest` on the CDNOW sample: the --json shape, published parameters, report."""

import argparse
import html
import json
import math

import numpy as np
import pandas as pd
import pytest

from clv_platform import backtest_cli
from clv_platform.models import metrics
from clv_platform_tests.cheap_config import cheap_clv_config

MODELS = {"naive", "btyd", "xgboost", "hybrid", "hybrid_mean", "btyd_point", "served"}
METRICS = {"mae", "rmse", "spearman", "normalized_gini", "predicted_total"}


def _sig(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits - 1}e}")


# This file checks what the CLI reports and how the pieces relate, not how accurate the models
# are, so it runs on the cheaper clv.toml of cheap_config.py through the CLI's own --config (the
# Pareto/NBD refits per training window of the auto choice were half the run time).


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    folder = tmp_path_factory.mktemp("report")
    report = folder / "cdnow.html"
    # the rolling-window coverage is tested in test_backtest.py; here it would only add run time
    return parser.parse_args(["--dataset", "cdnow-sample", "--json", "--report", str(report),
                              "--coverage-windows", "0", "--config", str(cheap_clv_config(folder))]), report


def test_json_has_the_documented_shape_and_published_parameters(sample_run, capsys):
    args, report = sample_run
    assert backtest_cli.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["dataset", "customers", "window", "input", "bgnbd", "pareto_nbd", "gamma_gamma", "holdout",
                         "per_stage", "deciles", "btyd_selection", "intervals", "parameter_bootstrap",
                         "served_total_interval", "serving", "headline", "npd"]
    assert out["input"] == {"rows_used": 6919, "rows_dropped": {}, "order_gaps": []}
    assert out["btyd_selection"]["chosen"] == "mbgnbd" and out["btyd_selection"]["reason"]
    # the published protocol's window; the label window production's rule gives this history: a
    # third of the 262 days since the tenth repeat buyer (1997-01-11), not the configured 180
    assert (out["window"]["calibration_end"], out["window"]["holdout_end"]) == ("1997-09-30", "1998-06-30")
    assert out["window"]["label_window_days"] == 87
    assert out["window"]["label_window"].startswith("87 days, shortened from 180: a third of the 262 days since the "
                                                    "history's 10th repeat buyer (1997-01-11)")
    assert set(out["intervals"]) == {"btyd", "xgboost", "hybrid", "hybrid_mean", "btyd_point", "served"}
    serving = out["serving"]
    # the training windows' BTYD fits, by feature cutoff: this config names the family (cheap_config),
    # so none is taken from the served fit (with "auto": test_window_fits.py)
    windows = serving["window_btyd"]
    assert (windows["family"], windows["reason"], windows["unpinned"]) == (None, "[btyd] model = mbgnbd", {})
    # the feature cutoffs of production's one window: C - 2h (the objective selection's) and C - h
    assert list(windows["windows"]) == ["1997-04-09", "1997-07-05"]
    assert {w["model"] for w in windows["windows"].values()} == {"mbgnbd"}
    assert max(windows["windows"]) < out["window"]["calibration_end"]
    assert serving["hybrid_point_rule"] in ("sharpen", "median") and serving["btyd_point_rule"] in ("sharpen", "median")
    assert serving["point_rule"] == serving["btyd_point_rule" if serving["served"] == "btyd" else "hybrid_point_rule"]
    point, mean = out["holdout"]["models"]["hybrid"], out["holdout"]["models"]["hybrid_mean"]
    if serving["hybrid_point_rule"] == "sharpen":
        # the hybrid column is the sharpened point forecast of hybrid_mean: same total and ranking
        assert point["predicted_total"] == pytest.approx(mean["predicted_total"], rel=1e-9)
        assert point["normalized_gini"] == pytest.approx(mean["normalized_gini"], abs=1e-9)
    else:
        # the predictive median: 0 for every customer less likely than not to buy, so below the mean's total
        assert point["predicted_total"] < mean["predicted_total"]
    if serving["btyd_point_rule"] == "sharpen":
        assert out["holdout"]["models"]["btyd_point"]["predicted_total"] == pytest.approx(
            out["holdout"]["models"]["btyd"]["predicted_total"], rel=1e-6)
    # the interval is built around the mean, and the share of points inside it is reported
    assert out["intervals"]["hybrid"]["total_p10"] == pytest.approx(out["intervals"]["hybrid_mean"]["total_p10"])
    assert out["intervals"]["btyd_point"]["total_p10"] == pytest.approx(out["intervals"]["btyd"]["total_p10"])
    assert 0.0 <= out["intervals"]["hybrid"]["point_within_interval"] <= 1.0
    assert serving["sharpen"] in (serving["hybrid_sharpen"], serving["btyd_sharpen"])
    assert 1.0 <= serving["hybrid_sharpen"] <= 3.0 and 1.0 <= serving["btyd_sharpen"] <= 3.0
    # the verdict: ranking by the hybrid's mean, MAE of its point against the better BTYD MAE
    models, head = out["holdout"]["models"], out["headline"]
    verdict = out["headline"]
    assert verdict["hybrid_ranking_gini"] == mean["normalized_gini"] and verdict["hybrid_point_mae"] == point["mae"]
    assert verdict["best_btyd_mae"] == min(models["btyd"]["mae"], models["btyd_point"]["mae"])
    # the served model's forecast total is its mean's, whatever its point rule (no season on CDNOW's
    # eight months: the hybrid mean's or the plain BTYD's column)
    served_mean = models["btyd" if serving["served"] == "btyd" else "hybrid_mean"]["predicted_total"]
    assert head["served_mean_predicted_total"] == pytest.approx(served_mean, rel=1e-9)
    assert serving["served_mean_predicted_total"] == head["served_mean_predicted_total"]
    assert head["served_mean_total_error"] == pytest.approx(served_mean / out["holdout"]["actual_total"] - 1.0)
    # the served column's interval is centred on the served mean (here that column's own interval)
    mean_column = "btyd" if serving["served"] == "btyd" else "hybrid_mean"
    for bound in ("total_p10", "total_p90", "mean_p10", "mean_p90", "served_total_process_p10"):
        assert out["intervals"]["served"][bound] == pytest.approx(out["intervals"][mean_column][bound]), bound
    # the served hybrid's level check, with the numbers behind it
    level = serving["level_check"]
    if serving["served"] == "hybrid":
        assert level["consistent"] and level["log_drift"] == pytest.approx(
            math.log(level["served_over_btyd"] / level["validated_over_btyd"]))
    # ahead only beyond 1.645 paired standard errors of the per-customer gain; within them a tie
    paired = out["holdout"]["hybrid_point_vs_btyd"]
    assert paired["rival"] == min(("btyd", "btyd_point"), key=lambda m: models[m]["mae"])
    assert paired["gain"] == pytest.approx(models[paired["rival"]]["mae"] - point["mae"], abs=1e-9)
    assert paired["se"] > 0 and paired["significant"] == (paired["gain"] > 1.645 * paired["se"])
    assert verdict["hybrid_ahead_on_mae"] == float(point["mae"] < verdict["best_btyd_mae"] and paired["significant"])
    assert verdict["hybrid_ties_on_mae"] == float(point["mae"] < verdict["best_btyd_mae"] and not paired["significant"])
    assert verdict["hybrid_ahead_on_gini"] == float(mean["normalized_gini"] > max(
        models["btyd"]["normalized_gini"], models["naive"]["normalized_gini"]))
    for block in out["intervals"].values():
        assert 0.0 <= block["customer_coverage"] <= 1.0 and block["total_p10"] <= block["total_p90"]
        # the parameter term widens the total's interval around the customer-noise-only one
        assert block["parameter_uncertainty"] is True
        assert block["total_p90"] - block["total_p10"] > block["total_p90_process"] - block["total_p10_process"]
    # the served store-total interval (what scores/customer_clv serves), next to its process-only base
    served = out["served_total_interval"]
    record = served["training_windows"]
    assert served["served_model"] == out["serving"]["served"] and record["label_days"] == 87
    assert [w["label_end"] for w in record["windows"]] == ["1997-09-30", "1997-07-05"]
    assert record["btyd_log_errors"] == pytest.approx(
        [math.log(w["actual_total"] / w["predicted_total"]) for w in record["windows"]])
    for name in ("btyd", "btyd_point", "hybrid", "hybrid_mean", "served"):
        block = out["intervals"][name]
        level = name.startswith("hybrid") or (name == "served" and served["served_model"] == "hybrid")
        errors = ([record["btyd_log_errors"][1] - record["btyd_log_errors"][0]] if level
                  else record["btyd_log_errors"])
        assert block["served_total_log_errors"] == pytest.approx(errors), name
        # t(0.9, n) x rms x sqrt(273 / 87 days)
        t = {1: 3.077683537175253, 2: 1.8856180831641267}[len(errors)]
        assert block["served_total_log_half_width"] == pytest.approx(
            t * float(np.sqrt(np.mean(np.square(errors)))) * math.sqrt(273 / 87))
        assert block["served_total_p10"] <= block["served_total_process_p10"] <= block["served_total_process_p90"]
        assert block["served_total_process_p90"] <= block["served_total_p90"]
        assert block["served_total_covered"] == (
            block["served_total_p10"] <= out["holdout"]["actual_total"] <= block["served_total_p90"])
        assert head[f"{name}_served_total_covered"] == float(block["served_total_covered"])
        assert block["served_total_rule"].startswith("symmetric t")
    assert served["served_total_p10"] == out["intervals"]["served"]["served_total_p10"]
    assert "served_total_p10 / served_total_p90" in served["kinds"]
    boot = out["parameter_bootstrap"]
    assert boot["replicates"] == 20 and boot["failed"] < 5 and 0.0 < boot["cv"] < 0.5
    assert boot["factor_p10"] < 1.0 < boot["factor_p90"]
    actual = out["holdout"]["actual_total"]
    for name in ("naive", "btyd", "xgboost", "hybrid"):
        block = out["holdout"]["models"][name]
        assert head[f"{name}_mae"] == block["mae"] and head[f"{name}_normalized_gini"] == block["normalized_gini"]
        assert head[f"{name}_total_error"] == pytest.approx(block["predicted_total"] / actual - 1.0)
    assert head["hybrid_customer_coverage"] == out["intervals"]["hybrid"]["customer_coverage"]
    assert head["btyd_total_covered"] == float(out["intervals"]["btyd"]["total_covered"])
    assert all(isinstance(v, float) for v in head.values())
    assert out["serving"]["served"] in ("hybrid", "btyd") and "validation window" in out["serving"]["reason"]
    assert set(out["npd"]["models"]) == {"naive", "btyd", "aft", "btyd_fallback"}
    # the timing block is CDNOW's BG/NBD, fitted as it stands
    assert out["npd"]["btyd_timing"] == {"family": "bgnbd", "penalizer": 0.0, "reason": "fitted"}
    for name, block in out["npd"]["models"].items():
        assert 0.0 <= block["brier_30d"] <= 1.0 and 0.0 <= block["auc_90d"] <= 1.0
        assert name == "btyd_fallback" or block["mae_days"] > 0
    # ml/npd_model's rule on the history before the calibration end: the BTYD fallback wins there
    served = out["npd"]["served"]
    assert served["model"] == "btyd_fallback"
    assert served["reason"].startswith("the trained model does not beat the BTYD fallback on the validation window")
    # BTYD and the censoring-aware AFT model rank 30-day buyers far better than the cadence rule
    assert min(out["npd"]["models"]["btyd"]["auc_30d"], out["npd"]["models"]["aft"]["auc_30d"]) > (
        out["npd"]["models"]["naive"]["auc_30d"] + 0.15
    )
    assert out["dataset"] == "cdnow-sample" and out["customers"] == 2357
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert set(out["bgnbd"]) == set(published)
    assert {k: _sig(v) for k, v in out["bgnbd"].items()} == {k: _sig(v) for k, v in published.items()}
    assert set(out["pareto_nbd"]) == {"r", "alpha", "s", "beta"}
    assert out["pareto_nbd"]["r"] == pytest.approx(0.553, rel=0.01)
    assert set(out["gamma_gamma"]) == {"p", "q", "v"}
    assert out["gamma_gamma"]["p"] == pytest.approx(6.25, rel=0.01)
    holdout = out["holdout"]
    assert set(holdout) == {"actual_total", "models", "hybrid_point_vs_btyd", "hybrid_ranking_vs"}
    assert set(holdout["models"]) == MODELS
    # the hybrid mean's ranking lead over each baseline, read off the models' own holdout Gini
    for rival, block in holdout["hybrid_ranking_vs"].items():
        assert block["gain"] == pytest.approx(holdout["models"]["hybrid_mean"]["normalized_gini"]
                                              - holdout["models"][rival]["normalized_gini"], abs=1e-12)
        assert block["se"] > 0 and out["headline"][f"hybrid_gini_se_vs_{rival}"] == block["se"]
    assert set(holdout["hybrid_ranking_vs"]) == {"btyd", "naive"}
    for block in holdout["models"].values():
        assert set(block) == METRICS and all(math.isfinite(v) for v in block.values())
    assert set(out["deciles"]) == MODELS and all(len(rows) == 10 for rows in out["deciles"].values())
    for stage in out["per_stage"].values():
        assert MODELS <= set(stage)
    document = report.read_text(encoding="utf-8")
    assert document.count("<svg") >= 5 and "objective selection" in document and "hybrid" in document
    btyd_gain = holdout["hybrid_ranking_vs"]["btyd"]
    assert "The hybrid against the baselines" in document
    assert f"Gini of its mean vs btyd {btyd_gain['gain']:+.4f} (SE {btyd_gain['se']:.4f}, {btyd_gain['outcome']})" \
        in document
    assert "Next purchase: naive cadence vs BTYD timing vs XGBoost AFT" in document
    assert "BTYD family" in document and "80 % intervals" in document and "served total interval" in document
    # the served hybrid's level check, with its drift (the cheap config's run serves the hybrid)
    level = out["serving"]["level_check"]
    assert out["serving"]["served"] == "hybrid" and level["consistent"]
    assert f"Level check of the served hybrid: the retrained hybrid forecasts the label window at " \
           f"{level['served_over_btyd']:.3f} x the BTYD" in document
    # the validated win at the served level (train.served_level_win): judged or not, and why
    win = level["win_at_served_level"]
    assert win["consistent"] and f"Win at the served level of the served hybrid: {html.escape(win['reason'])}" in document
    # the year-back check (train.year_back_check): CDNOW's short label window is no half year
    year_back = out["serving"]["year_back_check"]
    assert year_back["consistent"] and not year_back["applies"]
    assert (f"Year-back check of the served hybrid: not checked: the inner label window lies "
            f"{2 * year_back['label_days']} days before the forecast") in document


def test_short_history_is_refused_in_plain_words(tmp_path, capsys):
    import pandas as pd

    path = tmp_path / "short.csv"
    pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                  "order_date": ["2024-01-01", "2024-01-20", "2024-02-01", "2024-02-10"],
                  "amount": [10.0, 12.0, 5.0, 7.0]}).to_csv(path, index=False)
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    assert backtest_cli.run(parser.parse_args(["--dataset", str(path), "--json"])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "history too short" in captured.err and "days" in captured.err


def _repeat_buyers(second_days: list[str], n_one_time: int = 30) -> pd.DataFrame:
    """Customers first buying on 2024-01-01 and again on the given days, plus one-time buyers."""
    rows = [("r%d" % i, "2024-01-01", 10.0) for i in range(len(second_days))]
    rows += [("r%d" % i, day, 12.0) for i, day in enumerate(second_days)]
    rows += [("o%d" % i, "2024-01-%02d" % (1 + i % 28), 5.0) for i in range(n_one_time)]
    rows += [("late", "2024-06-20", 9.0)]  # an order after the calibration end
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    return frame.assign(order_date=pd.to_datetime(frame["order_date"]))


def _label_window(transactions: pd.DataFrame, calibration_end, holdout_end, config) -> tuple[int, str]:
    from clv_platform.models import frames

    backtest_cli.check_history(transactions, calibration_end, holdout_end)
    conn = frames.staging_connection(transactions)
    try:
        return backtest_cli.label_window(conn, calibration_end, holdout_end, config)
    finally:
        conn.close()


def test_label_window_is_a_third_of_the_history_since_the_tenth_repeat_buyer_and_refuses_below_two_weeks():
    from clv_platform.models import clv

    config = clv.load_config()
    assert config.label_horizon_days == 180
    calibration_end, holdout_end = pd.Timestamp("2024-05-31"), pd.Timestamp("2024-06-30")
    # ten repeat buyers by 2024-01-20: 132 days // 3 = 44 would fit, the holdout (30 days) rules
    early = _repeat_buyers(["2024-01-%02d" % d for d in range(11, 21)])
    assert _label_window(early, calibration_end, holdout_end, config) == (
        30, "30 days (the holdout; [horizon] label_horizon_days is 180)")
    # a year-long holdout: 44 days, a third of the 132 since the tenth repeat buyer
    days, note = _label_window(early, calibration_end, pd.Timestamp("2025-05-31"), config)
    assert days == 44 and note.startswith("44 days, shortened from 180: a third of the 132 days") and "2024-01-20" in note
    # the tenth repeat buyer on 2024-04-11: 50 days // 3 = 16 (the third-day rule, not the holdout)
    late = _repeat_buyers(["2024-03-%02d" % d for d in range(1, 10)] + ["2024-04-11"])
    days, note = _label_window(late, calibration_end, holdout_end, config)
    assert days == 16 and note.startswith("16 days, shortened from 30") and "2024-04-11" in note
    assert config.for_backtest(30, days).label_horizon_days == 16
    assert config.for_backtest(30).label_horizon_days == 30 and config.for_backtest(400).label_horizon_days == 180
    # the backtest trains on production's windows
    assert config.for_backtest(30).window_count == config.window_count == 1
    # the tenth on 2024-05-10: 21 days // 3 = 7 < 14, refused in plain words
    with pytest.raises(ValueError, match=r"history too short: the 10th repeat buyer came on 2024-05-10, 21 days before "
                                         r"2024-05-31: .* by 2024-06-21"):
        _label_window(_repeat_buyers(["2024-03-01"] * 9 + ["2024-05-10"]), calibration_end, holdout_end, config)
    with pytest.raises(ValueError, match="only 9 customers bought on two different days"):
        _label_window(_repeat_buyers(["2024-02-01"] * 9), calibration_end, holdout_end, config)
    # a return is not a purchase day: a tenth customer whose second day is a return leaves nine
    returned = pd.concat([_repeat_buyers(["2024-02-01"] * 9), pd.DataFrame(
        {"customer_id": ["ret", "ret"], "order_date": pd.to_datetime(["2024-01-05", "2024-02-01"]),
         "amount": [40.0, -15.0]})], ignore_index=True)
    with pytest.raises(ValueError, match="only 9 customers bought on two different days"):
        _label_window(returned, calibration_end, holdout_end, config)


def test_a_clv_toml_with_the_old_backtest_section_is_refused(tmp_path):
    """[backtest] set the backtest's own label window until 6 December 2026; ignoring it silently
    would backtest another configuration than the file's author meant."""
    from clv_platform.models import clv

    path = tmp_path / "clv.toml"
    path.write_text(clv.default_config_path().read_text(encoding="utf-8")
                    + "\n[backtest]\nlabel_horizon_days = 91\nwindow_count = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[backtest\] is no longer read"):
        clv.load_config(path)


def test_default_window_of_a_csv_is_its_last_third():
    import pandas as pd

    from clv_platform.models.datasets import LoadedDataset

    frame = pd.DataFrame({"customer_id": ["a", "b"], "order_date": pd.to_datetime(["2023-01-01", "2023-12-31"]),
                          "amount": [1.0, 2.0]})
    calibration_end, holdout_end, note = backtest_cli.default_window(LoadedDataset("x", frame, None, None))
    assert holdout_end == pd.Timestamp("2023-12-31")
    assert (holdout_end - calibration_end).days == 364 // 3 and "derived" in note


def test_inverted_window_is_rejected(capsys):
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    args = parser.parse_args(["--dataset", "cdnow-sample", "--calibration-end", "1997-09-30",
                              "--holdout-end", "1997-09-01"])
    assert backtest_cli.run(args) == 2
    assert "holdout-end" in capsys.readouterr().err


def test_a_lower_mae_within_noise_is_a_tie_not_ahead():
    """Paired gain of the hybrid over the better BTYD column: +0.01 on 4 customers and -0.01 on 3 of
    400 is a lower MAE (by 0.000025) with a standard error of 0.000066: a tie. 1.0 on every
    customer is ahead."""
    actual = np.r_[np.full(200, 10.0), np.zeros(200)]
    frame = pd.DataFrame({"actual": actual, "btyd": actual + 1.0, "btyd_point": actual + 2.0,
                          "hybrid": np.r_[np.full(4, 10.99), np.full(3, 11.01), np.full(193, 11.0), np.full(200, 1.0)]})
    tie = backtest_cli.paired_mae_gain(frame, "hybrid", ("btyd", "btyd_point"))
    assert tie["rival"] == "btyd" and tie["gain"] == pytest.approx(0.000025)
    assert tie["se"] == pytest.approx(np.std(np.r_[np.full(4, 0.01), np.full(3, -0.01), np.zeros(393)], ddof=1) / 20.0)
    assert tie["significant"] is False and tie["outcome"] == "tie"
    ahead = backtest_cli.paired_mae_gain(frame.assign(hybrid=actual), "hybrid", ("btyd", "btyd_point"))
    assert ahead["gain"] == pytest.approx(1.0) and ahead["se"] == 0.0 and ahead["significant"] is True
    assert ahead["outcome"] == "ahead"
    # 3.0 off every customer where the BTYD is 1.0 off: behind by 2.0 with no noise at all
    behind = backtest_cli.paired_mae_gain(frame.assign(hybrid=actual + 3.0), "hybrid", ("btyd", "btyd_point"))
    assert behind["gain"] == pytest.approx(-2.0) and behind["significant"] is False and behind["outcome"] == "behind"
    result = {"holdout": {"actual_total": 2000.0, "hybrid_point_vs_btyd": tie, "models": {
        name: {"mae": float(np.abs(frame[name] - actual).mean()), "normalized_gini": 0.5, "predicted_total": 2000.0}
        for name in ("btyd", "btyd_point", "hybrid")} | {"hybrid_mean": {"normalized_gini": 0.6,
                                                                      "predicted_total": 2000.0},
                                                      "naive": {"normalized_gini": 0.4}}}}
    flags = backtest_cli.verdict(result)
    assert (flags["hybrid_ahead_on_mae"], flags["hybrid_ties_on_mae"]) == (0.0, 1.0)
    result["holdout"]["hybrid_point_vs_btyd"] = ahead
    assert (backtest_cli.verdict(result)["hybrid_ahead_on_mae"], backtest_cli.verdict(result)["hybrid_ties_on_mae"]) \
        == (1.0, 0.0)


def test_a_ranking_lead_or_lag_within_its_noise_is_a_tie():
    """The hybrid mean's holdout Gini against each rival, with the bootstrap SE of the paired gain:
    the actual spend itself ranks perfectly (ahead of a coin-flip ranking by far beyond noise), the
    naive ranking with its top two swapped differs from it by a hair (a tie), and the reversed ranking is
    behind. The verdict carries the gains and the behind-beyond-noise flags."""
    rng = np.random.default_rng(4)
    actual = np.r_[rng.gamma(0.6, 80.0, 600), np.zeros(1400)]
    noisy = actual + rng.normal(0.0, 40.0, actual.size)
    swapped = noisy.copy()
    top = np.argsort(-noisy)[:2]
    swapped[top] = swapped[top[::-1]]
    frame = pd.DataFrame({"actual": actual, "hybrid_mean": actual, "btyd": rng.random(actual.size),
                          "naive": noisy})
    gains = backtest_cli.paired_gini_gains(frame, "hybrid_mean", ("btyd", "naive", "absent"))
    assert set(gains) == {"btyd", "naive"}
    assert gains["btyd"]["gain"] == pytest.approx(1.0 - metrics.normalized_gini(actual, frame["btyd"]))
    assert gains["btyd"]["outcome"] == "ahead" and gains["btyd"]["gain"] > 10 * gains["btyd"]["se"] > 0
    tie = backtest_cli.paired_gini_gains(frame.assign(hybrid_mean=swapped), "hybrid_mean", ("naive",))["naive"]
    assert tie["gain"] != 0.0 and abs(tie["gain"]) < 1.645 * tie["se"] and tie["outcome"] == "tie"
    behind = backtest_cli.paired_gini_gains(frame.assign(hybrid_mean=-actual), "hybrid_mean", ("naive",))["naive"]
    assert behind["gain"] < -1.645 * behind["se"] and behind["outcome"] == "behind"
    models = {"hybrid": {"mae": 1.0}, "btyd": {"mae": 2.0, "normalized_gini": 0.5}, "naive": {"normalized_gini": 0.4},
              "hybrid_mean": {"normalized_gini": 0.45, "predicted_total": 10.0}}
    flags = backtest_cli.verdict({"holdout": {"actual_total": 10.0, "models": models, "hybrid_ranking_vs": {
        "btyd": behind, "naive": tie}}})
    assert flags["hybrid_gini_gain_vs_btyd"] == behind["gain"] and flags["hybrid_gini_se_vs_naive"] == tie["se"]
    assert (flags["hybrid_gini_behind_btyd_beyond_noise"], flags["hybrid_gini_behind_naive_beyond_noise"]) == (1.0, 0.0)
    assert flags["hybrid_ahead_on_gini"] == 0.0


def test_all_orders_on_one_day_is_refused_without_a_negative_period(tmp_path, capsys):
    """One day of orders: the derived calibration end falls 28 days before it; the message said the
    calibration period "runs -28 days"."""
    path = tmp_path / "one_day.csv"
    pd.DataFrame({"customer_id": [f"c{i % 50}" for i in range(200)], "order_date": "2024-05-05",
                  "amount": 10.0}).to_csv(path, index=False)
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    assert backtest_cli.run(parser.parse_args(["--dataset", str(path), "--json"])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("history too short: the file's orders span 0 days (2024-05-05 to 2024-05-05) and the calibration end "
            "2024-04-07 is before the first order") in captured.err
    assert "-28" not in captured.err


def test_rows_left_out_of_a_csv_are_reported_in_the_json(tmp_path, capsys):
    """Rows without a customer id are not a customer "nan": they are counted in `input`."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        while day < pd.Timestamp("2023-12-31"):
            rows.append((f"{1000 + i}.0" if i % 2 else f" {1000 + i} ", day.date().isoformat(), 10.0 + i % 7))
            day += pd.Timedelta(days=int(rng.integers(20, 90)))
    rows += [("", "2023-06-01", 500.0)] * 7
    path = tmp_path / "export.csv"
    pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]).to_csv(path, index=False)
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    code = backtest_cli.run(parser.parse_args(["--dataset", str(path), "--json", "--skip-npd", "--coverage-windows",
                                               "0", "--config", str(cheap_clv_config(tmp_path))]))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    result = json.loads(captured.out)
    assert result["input"] == {"rows_used": len(rows) - 7, "rows_dropped": {"missing customer id": 7}, "order_gaps": []}
    assert result["customers"] <= 120  # customers first seen by the calibration end; never one called "nan"
    assert "7 missing customer id" in captured.err


def test_next_purchase_backtest_of_a_short_history_trains_on_the_window_it_supports(tmp_path):
    """Four months of orders: the CLV models shorten their label window to what the history supports;
    the next-purchase AFT trained at C - 90 days, before the first order, and the whole backtest
    failed with "need at least 10 training rows, got 0"."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(300):
        day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 50)))
        while day <= pd.Timestamp("2023-04-30"):
            rows.append((f"c{i}", day.date().isoformat(), float(rng.gamma(3.0, 15.0))))
            day += pd.Timedelta(days=int(rng.integers(5, 40)))
    path = tmp_path / "four_months.csv"
    pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]).to_csv(path, index=False)
    result, _ = backtest_cli.run_backtest(str(path), config_path=cheap_clv_config(tmp_path), with_npd=True)
    label_days = result["window"]["label_window_days"]
    assert label_days < 90
    window = result["npd"]["training_window"]
    assert window["horizon_days"] == label_days and window["rows"] > 100
    # every customer buys every 5-40 days: the AFT reads the cadence, the BTYD fallback (a Poisson
    # process) ranks the customers who just bought first and loses on the window before C
    served = result["npd"]["served"]
    assert served["model"] == "aft" and served["reason"].startswith("the trained model is no worse than the BTYD")
    assert served["validation"]["aft"]["auc_30d"] > 0.7 > 0.3 > served["validation"]["btyd_fallback"]["auc_30d"]
    assert served["holdout"] == result["npd"]["models"]["aft"]
    for name in ("naive", "btyd", "aft"):
        block = result["npd"]["models"][name]
        assert block["customers"] == result["customers"]
        assert all(math.isfinite(block[key]) for key in ("mae_days", "median_ae_days"))


def test_a_month_missing_inside_the_label_windows_serves_the_btyd_and_says_why(tmp_path):
    """Orders every day for two years but none from 1 August to 14 September 2023, inside the label
    windows before the calibration end: the hybrid's level (and the next-purchase model) would learn
    the hole as customers who stopped buying, so the BTYD (its fallback) is served, and the reason
    names the stretch."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(400):
        day = pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(rng.integers(0, 200)))
        while day <= pd.Timestamp("2023-12-31"):
            if not pd.Timestamp("2023-08-01") <= day <= pd.Timestamp("2023-09-14"):
                rows.append((f"c{i}", day.date().isoformat(), float(rng.gamma(3.0, 15.0))))
            day += pd.Timedelta(days=int(rng.integers(5, 60)))
    path = tmp_path / "hole.csv"
    pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]).to_csv(path, index=False)
    result, _ = backtest_cli.run_backtest(str(path), "2023-10-31", "2023-12-31", cheap_clv_config(tmp_path),
                                          with_npd=True)
    assert [(gap["start"], gap["end"]) for gap in result["input"]["order_gaps"]] == [("2023-08-01", "2023-09-14")]
    assert result["serving"]["served"] == "btyd"
    assert result["serving"]["reason"].startswith(
        "the label windows the hybrid learned its level on hold no orders from 2023-08-01 to 2023-09-14 (45 days)")
    # the next-purchase model's two windows before the calibration end hold it too
    served = result["npd"]["served"]
    assert served["model"] == "btyd_fallback" and served["reason"].startswith(
        "the trained model's windows hold no orders from 2023-08-01 to 2023-09-14 (45 days)")


def _dormant_store(tmp_path, last_day: str):
    """200 customers buying from January 2022 to ``last_day``, then five orders on 2023-10-15."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(200):
        day = pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        while day <= pd.Timestamp(last_day):
            rows.append((f"c{i}", day.date().isoformat(), float(rng.gamma(3.0, 15.0))))
            day += pd.Timedelta(days=int(rng.integers(5, 40)))
    rows += [(f"c{i}", "2023-10-15", 30.0) for i in range(5)]
    path = tmp_path / "late.csv"
    pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]).to_csv(path, index=False)
    return path


def test_a_dormant_store_trains_next_purchase_on_the_season_of_a_year_before(tmp_path):
    """Orders through August 2022, then nothing until five in October 2023 (a dormant store): the 90
    days before the derived calibration end 2023-03-12 hold no purchase, but the same 90 days a year
    earlier do, and the model trains on both (the latest says nobody buys now)."""
    result, _ = backtest_cli.run_backtest(str(_dormant_store(tmp_path, "2022-08-31")),
                                       config_path=cheap_clv_config(tmp_path), with_npd=True)
    window = result["npd"]["training_window"]
    assert window["feature_cutoff"] == "2022-12-12" and window["censored_share"] == 1.0
    assert window["season_feature_cutoff"] == "2022-03-12" and window["season_rows"] > 100
    # the thirteen silent months are named (a dormant store, or a part of the file missing)
    assert [(gap["start"], gap["end"]) for gap in result["input"]["order_gaps"]] == [("2022-09-01", "2023-10-14")]
    assert ("<h2>The data</h2><p>no orders from 2022-09-01 to 2023-10-14 (409 days)"
            in backtest_cli.extra_sections_html(result))
    # and --json says so
    assert backtest_cli.json_view(result)["npd"]["training_window"]["season_rows"] == window["season_rows"]


def test_a_store_without_orders_before_the_calibration_end_serves_the_next_purchase_fallback_in_words(tmp_path):
    """Orders through 10 March 2022, then nothing until five in October 2023 (a dormant store, or typo
    dates): the derived calibration end 2023-03-12 has no purchase in the AFT's 90-day label window
    before it, nor in the same window a year earlier. The backtest ended in "backtest: every row is
    censored" without saying what was too short, then refused the next-purchase part; since session
    54 it serves the BTYD fallback, as ml/npd_model registers it, saying what was too short."""
    path = _dormant_store(tmp_path, "2022-03-10")
    result, _ = backtest_cli.run_backtest(str(path), config_path=cheap_clv_config(tmp_path), with_npd=True)
    served = result["npd"]["served"]
    assert served["model"] == "btyd_fallback"
    assert served["reason"] == (
        "history too short to train on the 90 days before 2023-03-12 (and the same window a year earlier): every "
        "row is censored: no purchase was observed in the label window: serving the BTYD fallback")
    assert set(result["npd"]["models"]) == {"naive", "btyd", "btyd_fallback"}


def test_dataset_store_is_the_configured_store_and_never_built(data_env, monkeypatch, capsys):
    monkeypatch.setenv("CLV_SOURCE", "files")
    monkeypatch.delenv("CLV_DUCKDB_PATH", raising=False)
    expected = data_env / "files.duckdb"
    # no store yet: refused in a sentence, and nothing is created
    args = argparse.Namespace(dataset="store", forecast=False, forecast_only=False, forecast_cutoff=None)
    assert backtest_cli.run(args) == 2
    error = capsys.readouterr().err
    assert f"no store at {expected} (CLV_SOURCE=files)" in error and not expected.exists()
    expected.touch()
    assert backtest_cli.resolve_dataset("store") == str(expected)
    monkeypatch.setenv("CLV_DUCKDB_PATH", str(data_env / "other.duckdb"))
    (data_env / "other.duckdb").touch()
    assert backtest_cli.resolve_dataset("store") == str((data_env / "other.duckdb").resolve())
    assert backtest_cli.resolve_dataset("cdnow-full") == "cdnow-full"


def test_json_of_a_store_closed_through_its_validation_window_is_clean(tmp_path, capsys):
    """A shop open only from October to January, backtested from the end of its first summer closure:
    the validation window has no buyer, so its Gini is undefined. The JSON says null (it crashed with
    "Out of range float values are not JSON compliant"), and the closure is named (one closure is a
    stretch; two a year apart are a closed season, ``test_closed_season.py``)."""
    rng = np.random.default_rng(8)
    days = pd.date_range("2023-10-01", "2025-09-30", freq="D")
    open_days = days[days.month.isin([10, 11, 12, 1])]
    rows = []
    for i in range(250):
        first = int(rng.integers(0, len(open_days)))
        bought = [first] + [k for k in range(first + 1, len(open_days)) if rng.random() < 0.03]
        rows += [(f"w{i}", open_days[k].date().isoformat(), float(rng.gamma(3.0, 20.0))) for k in bought]
    path = tmp_path / "winter.csv"
    pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]).to_csv(path, index=False)
    parser = argparse.ArgumentParser()
    backtest_cli.add_arguments(parser)
    code = backtest_cli.run(parser.parse_args(["--dataset", str(path), "--json", "--skip-npd", "--calibration-end",
                                               "2024-09-30", "--holdout-end", "2025-09-30", "--coverage-windows", "0",
                                               "--config", str(cheap_clv_config(tmp_path))]))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    result = json.loads(captured.out)
    assert [(gap["start"], gap["end"]) for gap in result["input"]["order_gaps"]] == [
        ("2024-02-01", "2024-09-30")]
    # eight months without an order may be the season the shop closes for: what the forecasts then get wrong
    assert result["input"]["closed_season"] == (
        "a stretch of 243 days may also be a season the store closes for: if it closes then every year, the "
        "forecasts count those days of the coming year as days to buy on and are too high")
    assert result["input"]["closed_season"] in captured.err
    assert result["serving"]["served"] == "btyd"
    assert result["serving"]["component_gini"] == {"booster": None, "btyd": None, "naive": None}
    assert "Gini n/a vs BTYD n/a and naive n/a" in result["serving"]["reason"]
