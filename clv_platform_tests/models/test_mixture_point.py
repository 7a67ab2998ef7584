"""The hybrid's mixture median point rule (issue 19): a buy classifier's P(buy), carried to the
horizon by the BTYD's log-odds, and the BTYD's positive-part spend shape; chosen with the other
point rules on the validation rows only; stored with the model and reproduced by scoring."""

import dataclasses
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import btyd, btyd_intervals, clv, registry
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform_tests.cheap_config import one_tweedie_config
from clv_platform_tests.demo_cache import demo_database

# quantile / positive-part mean at levels 0, 0.1, ..., 0.5 (one row per customer)
RATIOS = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]


def test_mixture_median_is_zero_below_one_half_and_the_positive_quantile_at_one_minus_half_over_p():
    mean = np.array([30.0, 30.0, 10.0, 10.0, 12.0, 8.0, 50.0])
    p = np.array([0.0, 0.49, 0.5, 0.625, 0.8, 1.0, 0.9])
    ratios = np.array([RATIOS] * 6 + [[0.0] * 6])  # the last: no positive draw in the BTYD's paths
    point = clv.mixture_median(mean, p, ratios)
    # p < 0.5: 0. p = 0.5: level 0 -> 10 / 0.5 x 0.2 = 4. p = 0.625: level 0.2 -> 16 x 0.6 = 9.6.
    # p = 0.8: level 0.375 (between 0.3 and 0.4: 0.8 + 0.75 x 0.2 = 0.95) -> 15 x 0.95 = 14.25.
    # p = 1: level 0.5 (the positive part's median) -> 8 x 1.2 = 9.6. No positive shape -> 0.
    assert point == pytest.approx([0.0, 0.0, 4.0, 9.6, 14.25, 9.6, 0.0])
    with pytest.raises(ValueError, match="levels"):
        clv.mixture_median(mean[:1], p[:1], [[1.0, 1.0]])


def test_positive_part_ratios_are_the_quantiles_of_the_positive_draws_over_their_mean():
    sample = np.array([[0.0, 0.0, 1.0, 2.0, 3.0, 4.0], [0.0] * 6, [5.0] * 6, [0.0, 0.0, 0.0, 0.0, 0.0, 7.0]])
    out = btyd_intervals.positive_quantile_ratios(sample)
    expected = np.quantile([1.0, 2.0, 3.0, 4.0], btyd_intervals.POSITIVE_LEVELS) / 2.5
    assert out[0] == pytest.approx(expected) and expected[-1] == pytest.approx(1.0)  # median 2.5 / mean 2.5
    assert out[1] == pytest.approx([0.0] * 6)
    assert out[2] == pytest.approx([1.0] * 6) and out[3] == pytest.approx([1.0] * 6)
    assert btyd_intervals.POSITIVE_LEVELS == clv.POSITIVE_LEVELS


def test_buy_probability_is_carried_to_the_horizon_by_the_btyd_log_odds():
    # equal BTYD columns (a label-window frame): nothing is carried
    assert clv.carry_buy_probability([0.3, 0.7], [0.4, 0.4], [0.4, 0.4]) == pytest.approx([0.3, 0.7])
    # classifier odds 1 (p 0.5) over h; the BTYD's odds go from 1/3 (0.25) over h to 1 (0.5) over H:
    # the carried odds are 1 x 3 = 3, P 0.75
    assert clv.carry_buy_probability([0.5], [0.5], [0.25]) == pytest.approx([0.75])
    # a classifier that is sure stays (nearly) sure, clipped away from 0 and 1
    carried = clv.carry_buy_probability([1.0, 0.0], [0.5, 0.5], [0.25, 0.25])
    assert 0.999 < carried[0] < 1.0 and 0.0 < carried[1] < 0.001


def _case():
    """1,000 customers: 500 non-buyers and 500 buyers spending 10. The BTYD gives everyone a mean 5
    and a P50 of 0 (it cannot tell the buyers); the classifier says P 0.1 / 1.0. The hybrid's mean is
    5 / 10, the positive part's median is 2 x its mean, so the mixture median of a level L is 2 L for
    a buyer: exact (10) at lambda = 0 (L = 5), 20 at lambda = 1."""
    y = np.r_[np.zeros(500), np.full(500, 10.0)]
    btyd_mean = np.full(1000, 5.0)
    mean = np.r_[np.full(500, 5.0), np.full(500, 10.0)]
    p50 = np.zeros(1000)
    p_buy = np.r_[np.full(500, 0.1), np.ones(500)]
    ratios = np.tile([1.0, 1.0, 1.0, 1.0, 1.0, 2.0], (1000, 1))
    return y, mean, btyd_mean, p50, (p_buy, ratios)


def test_point_rule_takes_the_mixture_when_it_wins_on_the_rows_given_and_refuses_it_otherwise():
    y, mean, btyd_mean, p50, mixture = _case()
    chosen = clv.point_rule(y, mean, p50, 1.645, btyd_mean=btyd_mean, mixture=mixture)
    assert (chosen["rule"], chosen["shrink"]) == (clv.MIXTURE, 0.0) and chosen["mae"] == pytest.approx(0.0)
    rows = {r["shrink"]: r["mae"] for r in chosen["comparison"] if r["rule"] == clv.MIXTURE}
    assert sorted(rows) == list(clv.MIXTURE_SHRINK_GRID)
    assert rows[1.0] == pytest.approx(5.0)  # 20 for every buyer: 10 too high for half the base
    assert rows[0.5] == pytest.approx(2.5)
    point = clv.apply_point_rule(mean, chosen["rule"], chosen["gamma"], p50, chosen["shrink"], btyd_mean, mixture)
    assert point == pytest.approx(y)
    # the choice is a function of the rows given: where the "buyers" buy nothing, the predictive
    # median (0 for all, MAE 0) wins and the mixture (10 or 20 for them) is refused
    other = clv.point_rule(np.zeros(1000), mean, p50, 1.645, btyd_mean=btyd_mean, mixture=mixture)
    assert other["rule"] == clv.MEDIAN and other["mae"] == 0.0
    with pytest.raises(ValueError, match="mixture point rule needs"):
        clv.apply_point_rule(mean, clv.MIXTURE, 1.0, p50, 0.0, btyd_mean, None)


def test_the_mixture_must_beat_the_median_beyond_noise_too():
    """1,000 customers with a mean of 10 and a P50 ratio of 1 (the median rule's point is 10); the
    classifier is sure of 990 (P 1: the mixture's point 10 too) and puts 10 below one half (point 0).
    Six of those ten buy nothing and four spend 20: the mixture's MAE is 0.02 lower, a paired gain
    of 0.6 standard errors, and the median's point is served; with all ten at 0 the gain is 3.2
    SE and the mixture is."""
    mean, p50 = np.full(1000, 10.0), np.ones(1000)
    p_buy = np.r_[np.full(10, 0.4), np.ones(990)]
    ratios = np.tile([1.0] * 6, (1000, 1))
    y = np.r_[np.zeros(6), np.full(4, 20.0), np.full(990, 10.0)]
    chosen = clv.point_rule(y, mean, p50, 1.645, mixture=(p_buy, ratios))
    maes = {r["rule"]: r["mae"] for r in chosen["comparison"] if r["rule"] != clv.SHARPEN}
    assert maes[clv.MIXTURE] == pytest.approx(maes[clv.MEDIAN] - 0.02)
    assert chosen["rule"] != clv.MIXTURE
    y[6:10] = 0.0
    chosen = clv.point_rule(y, mean, p50, 1.645, mixture=(p_buy, ratios))
    assert chosen["rule"] == clv.MIXTURE and chosen["mae"] == pytest.approx(0.0)
    assert chosen["reason"].endswith("over the mean and the best median")


def test_blend_serves_the_mixture_only_when_it_beats_the_btyds_own_point_with_the_margin():
    y, mean, btyd_mean, p50, mixture = _case()
    booster = np.r_[np.random.default_rng(0).uniform(0.0, 2.0, 500), np.full(500, 10.0)]
    won = clv.blend_weight(y, btyd_mean, booster, None, 1.645, sharpening=True, p50_ratio=p50, mixture=mixture)
    # the BTYD's own point: median 0 for all (MAE 5); the mixture of the blend is exact
    assert won["btyd_point_mae"] == pytest.approx(5.0)
    assert won["metrics"] is not None and won["point_rule"] == clv.MIXTURE and won["metrics"]["mae"] == pytest.approx(0.0)
    # where the BTYD's median is exact (buyers spend 10 = its P50), no mixture can beat it: refused
    exact_p50 = np.r_[np.zeros(500), np.full(500, 2.0)]
    lost = clv.blend_weight(y, btyd_mean, booster, None, 1.645, sharpening=True, p50_ratio=exact_p50, mixture=mixture)
    assert lost["btyd_point_mae"] == pytest.approx(0.0) and lost["metrics"] is None


def test_blends_tied_on_the_point_mae_serve_the_one_nearest_the_btyd():
    # 900 non-buyers, 100 buyers spending 10 (MAE of predicting 0 for all: 1.0). The classifier
    # gives everyone P(buy) 0.1, so the mixture median of any mean is 0; the BTYD's own point is
    # its mean of 1 for everyone (MAE 1.8). The booster puts the buyers and 100 non-buyers first
    # (2.0, the rest 0.5; the same total), so every blend with w > 0 ranks the same, better than
    # the BTYD, and no sharpening of it reaches below 1.0: ten blends tied on Gini, total and MAE.
    y = np.r_[np.full(100, 10.0), np.zeros(900)]
    btyd_mean = np.ones(1000)
    booster = np.r_[np.full(200, 2.0), np.full(800, 0.5)]
    mixture = (np.full(1000, 0.1), np.tile(RATIOS, (1000, 1)))
    chosen = clv.blend_weight(y, btyd_mean, booster, None, 1.645, sharpening=True, p50_ratio=np.ones(1000),
                              mixture=mixture)
    assert chosen["btyd_point_mae"] == pytest.approx(1.8)
    tied = [r for r in chosen["comparison"] if r["weight"] > 0]
    assert len(tied) == 10 and all(r["mae"] == 1.0 and r["point_rule"] == clv.MIXTURE for r in tied)
    # the window cannot tell these blends apart: the smallest step off the BTYD is served, not
    # the booster alone (the mean a merchant sums and ranks by is 0.1 x booster + 0.9 x BTYD)
    assert (chosen["weight"], chosen["naive_weight"]) == (0.1, 0.0)
    assert chosen["metrics"]["mae"] == 1.0 and chosen["metrics"]["normalized_gini"] > 0.5
    # where the blends' points differ, the lowest MAE decides whatever its weight: a booster that
    # ranks the buyers alone first, sharpened, is nearly exact, and more of it is better
    sure = np.r_[np.full(100, 5.5), np.full(900, 0.5)]
    apart = clv.blend_weight(y, btyd_mean, sure, None, 1.645, sharpening=True, p50_ratio=np.ones(1000),
                             mixture=mixture)
    maes = {r["weight"]: r["mae"] for r in apart["comparison"] if r["weight"] > 0}
    assert len(set(maes.values())) == len(maes) and apart["weight"] == min(maes, key=maes.get) == 1.0


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    return demo_database(tmp_path_factory.mktemp("demo_mixture") / "demo.duckdb", 2000, features=True)


def test_stored_model_reproduces_trainings_mixture_point_and_scoring_carries_it(demo_db, data_env):
    config = one_tweedie_config(200)
    with duckdb.connect(str(demo_db), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        trained = clv.train_clv(conn, cutoff, config)
        frame, model_btyd = clv.scoring_frame(conn, cutoff, config)
        features = conn.execute("select * from features.customer_features").df()
    valid = trained.validation_frame
    # training: a calibrated classifier (mean P = the window's buyer share) and the BTYD's inputs
    p_valid = valid[clv.BUY_P_COLUMN].to_numpy(dtype=float)
    assert p_valid.mean() == pytest.approx((valid["label_spend"] > 0).mean(), abs=1e-6)
    assert trained.serving["buy_classifier"]["rounds"] >= 1
    assert (valid[clv.P_BUY_HORIZON] == valid[clv.P_BUY_LABEL]).all()  # one window: nothing to carry
    mixture = clv.objective.validation_mixture(valid)
    assert mixture is not None and mixture[1].shape == (len(valid), len(clv.POSITIVE_LEVELS))
    btyd_mean = valid["btyd_expected_spend"].to_numpy(dtype=float)
    mean = trained.model.predict_label_window(valid)
    expected = clv.mixture_median(clv.shrunk_mean(mean, 0.3, btyd_mean), p_valid, mixture[1])
    model = dataclasses.replace(trained.model, point_rule=clv.MIXTURE, point_shrink=0.3, serves_btyd=False)
    trained = dataclasses.replace(trained, model=model)
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        registry.save_model(conn, trained, config, trained_at=datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc))
        loaded, sidecar = registry.load_latest(conn)
    assert sidecar["classifier_file"] and loaded.classifier is not None
    assert loaded.classifier_shift == pytest.approx(trained.serving["buy_classifier"]["shift"])
    # the stored model gives training's P(buy) and so training's point on the validation rows
    assert loaded.buy_probability(valid) == pytest.approx(p_valid, abs=1e-6)
    p50 = valid[clv.P50_COLUMN].to_numpy(dtype=float)
    assert loaded.point(mean, None, p50, btyd_mean, valid) == pytest.approx(expected, abs=1e-6)
    assert (expected[p_valid < 0.5] == 0.0).all() and (expected > 0).any()

    # scoring: ml.btyd_scores (interval table with the label-window P(buy)) -> frame -> points
    h_weeks = config.label_horizon_days / btyd.DAYS_PER_WEEK
    codes = btyd_intervals.frame_keys(frame)
    table = btyd_intervals.interval_table(model_btyd, codes, config.horizon_days / btyd.DAYS_PER_WEEK,
                                          label_weeks=h_weeks)
    rows = clv.btyd_scores_table(frame, model_btyd, config, cutoff, intervals=table)
    # P(buy) over the horizon is the share of the same spend paths that spend anything
    unique = np.unique(codes)
    draws = model_btyd.sample_spend(btyd_intervals.key_summary(unique), config.horizon_days / btyd.DAYS_PER_WEEK)
    assert table.p_buy == pytest.approx((draws > 0).mean(axis=1))
    assert (table.p_buy_label <= table.p_buy + 0.15).all() and table.p_buy_label.mean() < table.p_buy.mean()
    scoring = clv.frame_from_tables(features, rows)
    scores = clv.predict_scores(loaded, scoring, config)
    carried = clv.carry_buy_probability(loaded.buy_probability(scoring), scoring[clv.P_BUY_HORIZON],
                                        scoring[clv.P_BUY_LABEL])
    level = clv.shrunk_mean(scores["predicted_clv"].to_numpy(), 0.3, scoring["btyd_clv_horizon"].to_numpy())
    want = clv.mixture_median(level, carried, scoring[list(clv.POSITIVE_COLUMNS)].to_numpy())
    assert scores["predicted_clv_point"].to_numpy() == pytest.approx(want)
    # carrying moved P towards the horizon's BTYD odds; the mean columns are untouched by the rule
    assert not np.allclose(carried, loaded.buy_probability(scoring))
    unscored = dataclasses.replace(loaded, point_rule=clv.SHARPEN)
    assert scores["predicted_clv"].to_numpy() == pytest.approx(
        clv.predict_scores(unscored, scoring, config)["predicted_clv"].to_numpy())
    # in a season: P(buy) goes into the coming season's purchase rate, r = its mean index over the
    # one the classifier was calibrated in (P -> 1 - (1 - P) ** r); 1 without a horizon or cutoff
    season = clv.ClvSeason(index=(2.0,) * 12, exposure=(), months_used=24, reason="test")
    seasonal = dataclasses.replace(loaded, season=season, classifier_season_mean=0.8, scoring_cutoff=cutoff)
    assert seasonal.buy_season_ratio(config.horizon_days) == pytest.approx(2.5)
    p_season, _ = seasonal.mixture_inputs(scoring, config.horizon_days)
    assert p_season == pytest.approx(1.0 - (1.0 - carried) ** 2.5)
    assert seasonal.buy_season_ratio(None) == 1.0
    assert dataclasses.replace(seasonal, scoring_cutoff=None).buy_season_ratio(config.horizon_days) == 1.0
    assert dataclasses.replace(seasonal, classifier_season_mean=None).buy_season_ratio(config.horizon_days) == 1.0
    assert seasonal.mixture_inputs(scoring)[0] == pytest.approx(carried)
    # a frame without the BTYD's mixture columns fails loudly, naming them
    with pytest.raises(ValueError, match="p_buy_horizon"):
        loaded.point(mean, None, p50, btyd_mean, valid.drop(columns=[clv.P_BUY_HORIZON]))
