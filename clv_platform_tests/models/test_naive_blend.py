"""The naive spend-rate rule as a third component of the hybrid's blend (issue 19, small stores):
chosen with the booster weight on the validation rows, so the hybrid never ranks below the best
of its components there; carried by the model, its sidecar and the scoring."""

import dataclasses
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv, metrics, registry
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform_tests.cheap_config import one_tweedie_config
from clv_platform_tests.demo_cache import demo_database


def _store(btyd_scale: float):
    """2,000 customers with a spend rate each; 30 % buy in the window, around their rate.

    The naive rule sees the rate through little noise, the BTYD through much more, and the booster
    is the BTYD's ranking moved a fifth of the way towards the rate (few rounds from its offset).
    The naive rule and the booster are mean-calibrated; the BTYD forecasts ``btyd_scale`` x the total."""
    rng = np.random.default_rng(19)
    n = 2000
    rate = rng.lognormal(2.0, 1.0, n)
    y = np.where(rng.random(n) < 0.3, rate * rng.lognormal(0.0, 0.5, n), 0.0)
    naive = rate * rng.lognormal(0.0, 0.3, n)
    btyd = rate * rng.lognormal(0.0, 1.0, n)
    booster = btyd ** 0.8 * naive ** 0.2
    return (y, btyd * btyd_scale * y.sum() / btyd.sum(), booster * y.sum() / booster.sum(),
            naive * y.sum() / naive.sum())


def test_blend_pairs_cover_the_simplex_grid_and_start_with_the_two_component_blend():
    assert clv.blend_pairs(False) == [(w, 0.0) for w in clv.BLEND_GRID]
    pairs = clv.blend_pairs(True)
    assert len(pairs) == 66 and len(set(pairs)) == 66  # 11 + 10 + ... + 1 pairs with w + v <= 1
    assert pairs[:11] == clv.blend_pairs(False) and (0.0, 1.0) in pairs and (0.3, 0.7) in pairs
    assert all(round(w + v, 2) <= 1.0 for w, v in pairs)
    b = clv.blend_mean(np.array([10.0, 0.0]), np.array([4.0, 8.0]), 0.5, np.array([2.0, 6.0]), 0.3)
    assert b == pytest.approx([0.5 * 10 + 0.3 * 2 + 0.2 * 4, 0.3 * 6 + 0.2 * 8])
    with pytest.raises(ValueError, match="naive"):
        clv.blend_mean(np.ones(2), np.ones(2), 0.5, None, 0.3)


def test_when_no_blend_beats_the_btyd_the_hybrid_ranks_at_least_as_well_as_the_naive_rule():
    """The BTYD at 0.9 x the total: no blend beats its MAE by the margin. Gini on these rows:
    naive 0.551, booster 0.459, BTYD 0.419 (the naive rule ranks best, as on the CDNOW sample)."""
    y, btyd, booster, naive = _store(0.9)
    gini = {name: metrics.normalized_gini(y, p) for name, p in (("naive", naive), ("btyd", btyd), ("booster", booster))}
    assert gini["naive"] == pytest.approx(0.5512, abs=1e-4) and gini["btyd"] == pytest.approx(0.4191, abs=1e-4)
    assert gini["booster"] == pytest.approx(0.4587, abs=1e-4)
    two = clv.blend_weight(y, btyd, booster, max_total_error=0.15, significance_z=1.645)
    three = clv.blend_weight(y, btyd, booster, max_total_error=0.15, significance_z=1.645, naive_spend=naive)
    assert two["metrics"] is None and three["metrics"] is None
    # without the naive rule the hybrid ranks below it (the failure on the CDNOW sample)
    two_gini = metrics.normalized_gini(y, clv.blend_mean(booster, btyd, two["weight"]))
    assert two["naive_weight"] == 0.0 and two_gini < gini["naive"] - 0.05
    # with it, the pair of highest validation Gini over all 66, never below any component
    chosen = clv.blend_mean(booster, btyd, three["weight"], naive, three["naive_weight"])
    best = max(r["normalized_gini"] for r in three["comparison"])
    assert metrics.normalized_gini(y, chosen) == pytest.approx(best) and best >= max(gini.values())
    assert three["naive_weight"] > 0 and three["component_gini"] == pytest.approx(gini)
    assert "highest validation Gini" in three["reason"]
    assert len(three["comparison"]) == 66 and len(two["comparison"]) == 11


def test_a_blend_beats_the_btyd_only_if_it_also_ranks_as_well_as_the_naive_rule():
    """The BTYD at 1.6 x the total (MAE 7.78): the booster alone beats it (MAE 5.99, Gini 0.459 >
    0.419) but ranks below the naive rule (0.551); with the naive rule a pair must rank at least as
    well as it, and only pairs that can win are given a point rule (the others keep MAE None)."""
    y, btyd, booster, naive = _store(1.6)
    two = clv.blend_weight(y, btyd, booster, max_total_error=0.15, significance_z=1.645)
    assert two["metrics"] is not None and two["metrics"]["normalized_gini"] < 0.46
    three = clv.blend_weight(y, btyd, booster, max_total_error=0.15, significance_z=1.645, naive_spend=naive)
    naive_gini = metrics.normalized_gini(y, naive)
    assert three["metrics"]["normalized_gini"] >= naive_gini
    assert three["metrics"]["mae"] < metrics.mae(y, btyd)
    # the chosen pair is the lowest MAE among the pairs that rank as well as the naive rule, beat the
    # BTYD and forecast the total within 15 %, recomputed here from the blends themselves
    eligible = []
    for w, v in clv.blend_pairs(True):
        blended = clv.blend_mean(booster, btyd, w, naive, v)
        if (w + v > 0 and metrics.normalized_gini(y, blended) >= naive_gini
                and abs(blended.sum() / y.sum() - 1.0) <= 0.15):
            eligible.append((metrics.mae(y, blended), w, v))
    assert min(eligible)[0] == pytest.approx(three["metrics"]["mae"])
    assert (three["weight"], three["naive_weight"]) in [(w, v) for _, w, v in eligible]
    judged = [r for r in three["comparison"] if r["naive_weight"] > 0 and r["mae"] is not None]
    assert len(judged) == len([e for e in eligible if e[2] > 0]) < 55


def test_naive_validation_is_the_spend_rate_times_the_window_at_the_btyds_level():
    """Spend 70 over 14 days (2 weeks) and 30 over 3 days (age floored at 1 week): rates 35 and 30
    per week, 91 days = 13 weeks: 455 and 390 (total 845). The BTYD forecasts 130 against an actual
    169: its level 1.3; the naive rule is served at the BTYD's total x that level, 169 = actual."""
    valid = pd.DataFrame({"total_net_spend": [70.0, 30.0], "T_days": [14, 3], "label_spend": [100.0, 69.0],
                          "btyd_expected_spend": [80.0, 50.0]})
    assert clv.naive_spend(valid, 91) == pytest.approx([455.0, 390.0])
    assert clv.naive_btyd_ratio(valid, 91) == pytest.approx(130.0 / 845.0)
    naive, level = clv.naive_validation(valid, 91)
    assert level == pytest.approx(1.3) and naive == pytest.approx([91.0, 78.0])
    assert clv.naive_validation(valid.drop(columns="T_days"), 91) == (None, 1.0)
    assert clv.naive_validation(valid.assign(total_net_spend=0.0), 91) == (None, 1.0)
    assert clv.naive_validation(valid.assign(btyd_expected_spend=0.0), 91) == (None, 1.0)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    return demo_database(tmp_path_factory.mktemp("demo_naive_blend") / "demo.duckdb", 2000, features=True)


def test_model_predicts_the_three_component_blend_and_the_registry_keeps_it(demo_db, data_env):
    config = one_tweedie_config(100, buy_classifier=False)
    with duckdb.connect(str(demo_db), read_only=True) as conn:
        trained = clv.train_clv(conn, scoring_cutoff(conn), config)
    valid = trained.validation_frame
    selection = trained.selection
    # the naive level is measured on the validation rows and recorded with the other blend choices
    naive, level = clv.naive_validation(valid, config.label_horizon_days)
    btyd_spend = valid["btyd_expected_spend"].to_numpy(dtype=float)
    assert selection.naive_level == pytest.approx(level) == trained.model.naive_level
    assert level == pytest.approx(valid["label_spend"].sum() / btyd_spend.sum())
    assert naive.sum() == pytest.approx(valid["label_spend"].sum())
    assert {"naive_weight", "naive_level", "component_gini"} <= set(selection.as_dict())
    assert selection.component_gini["naive"] == pytest.approx(
        metrics.normalized_gini(valid["label_spend"].to_numpy(dtype=float), naive))
    # a model with a naive component predicts w * booster + v * naive + (1 - w - v) * BTYD
    model = dataclasses.replace(trained.model, blend=0.5, naive_weight=0.3, serves_btyd=False)
    booster = dataclasses.replace(model, blend=1.0, naive_weight=0.0).predict_label_window(valid)
    want = 0.5 * booster + 0.3 * naive + 0.2 * btyd_spend
    assert model.predict_label_window(valid) == pytest.approx(want)
    # the naive level follows the BTYD of the population scored: given for the whole store (the
    # scores asset's SQL total), a batch of it gets the same forecasts as the whole frame
    ratio = clv.naive_btyd_ratio(valid, config.label_horizon_days)
    batch = valid.iloc[: len(valid) // 3]
    stored = dataclasses.replace(model, naive_population_ratio=ratio)
    assert stored.predict_label_window(batch) == pytest.approx(want[: len(batch)])
    assert not np.allclose(model.predict_label_window(batch), want[: len(batch)])
    # over a longer horizon the blend is extended with the BTYD's growth like the booster alone
    ratio = np.full(len(valid), 2.0)
    assert model.predict(valid, 2 * config.label_horizon_days, ratio) == pytest.approx(
        want * (1.0 + model.extension_factor))
    with duckdb.connect(str(data_env / "clv.duckdb")) as conn:
        registry.save_model(conn, dataclasses.replace(trained, model=model), config,
                            trained_at=datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc))
        loaded, sidecar = registry.load_latest(conn)
    assert (sidecar["naive_weight"], sidecar["naive_level"]) == (0.3, pytest.approx(level))
    assert loaded.predict_label_window(valid) == pytest.approx(want)


def test_scores_asset_takes_the_naive_level_from_the_whole_store_in_sql():
    """naive_population_ratio (SQL over the feature table and ml.btyd_scores) = naive_btyd_ratio of
    the joined frame: BTYD 10 + 20 + 0 (a customer without BTYD row counts 0) over the naive rule's
    (35 + 30 + 0; a refund-negative spend counts 0) x 13 weeks."""
    from clv_platform.models.clv_assets import naive_population_ratio

    features = pd.DataFrame({"customer_id": ["a", "b", "c"], "total_net_spend": [70.0, 30.0, -5.0],
                             "T_days": [14, 3, 40]})
    scores = pd.DataFrame({"customer_id": ["a", "b"], "expected_spend_label_window": [10.0, 20.0]})
    with duckdb.connect() as conn:
        conn.execute("create schema features; create schema ml")
        conn.execute("create table features.customer_features as select * from features")
        conn.execute("create table ml.btyd_scores as select * from scores")
        ratio = naive_population_ratio(conn, 91)
    frame = features.assign(btyd_expected_spend=[10.0, 20.0, np.nan])
    assert ratio == pytest.approx(30.0 / (65.0 * 13.0)) == pytest.approx(clv.naive_btyd_ratio(frame, 91))
