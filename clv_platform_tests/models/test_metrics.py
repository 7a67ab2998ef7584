"""Metric definitions checked on small examples computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from clv_platform.models import metrics

Y = [10.0, 0.0, 5.0, 0.0, 3.0]


def test_mae_rmse_on_hand_example():
    assert metrics.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert metrics.rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))


def test_gini_five_customers_by_hand():
    # ordered by p: y = 10, 0, 5, 3, 0 -> cumulative 10, 10, 15, 18, 18 of 18 -> mean 71/90
    p = [0.9, 0.1, 0.4, 0.5, 0.2]
    assert metrics.gini(Y, p) == pytest.approx(2 * 71 / 90 - 1)
    # ordered by y: 10, 5, 3, 0, 0 -> cumulative 10, 15, 18, 18, 18 -> mean 79/90
    assert metrics.gini(Y, Y) == pytest.approx(2 * 79 / 90 - 1)
    assert metrics.normalized_gini(Y, p) == pytest.approx(52 / 68)


def test_normalized_gini_perfect_and_reversed():
    assert metrics.normalized_gini(Y, Y) == pytest.approx(1.0)
    assert metrics.normalized_gini(Y, [2 * v + 1 for v in Y]) == pytest.approx(1.0)
    # reversed: y = 0, 0, 3, 5, 10 -> cumulative 0, 0, 3, 8, 18 -> mean 29/90 -> gini -32/90
    assert metrics.normalized_gini(Y, [-v for v in Y]) == pytest.approx(-32 / 68)
    assert metrics.normalized_gini(Y, [-v for v in Y]) < 0


def test_gini_ties_use_group_means_and_ignore_input_order():
    # tie groups {10, 0} and {5, 0, 3}: means 5 and 8/3 -> cumulative 5, 10, 38/3, 46/3, 18 (sum 61)
    p = [1, 1, 0, 0, 0]
    assert metrics.gini(Y, p) == pytest.approx(2 * 61 / 90 - 1)
    assert metrics.normalized_gini(Y, p) == pytest.approx(32 / 68)
    order = [4, 2, 1, 3, 0]
    assert metrics.gini(np.take(Y, order), np.take(p, order)) == pytest.approx(metrics.gini(Y, p))
    # an uninformative (constant) prediction scores 1/n in the ZILN area form, not 0
    assert metrics.gini(Y, [7.0] * 5) == pytest.approx(1 / 5)


def test_normalized_gini_on_one_set_of_customers_is_normalized_gini_for_every_ranking():
    """The blend search ranks many blends on one validation window with the denominator (the
    customers' own Gini) computed once: every value must be normalized_gini's, exactly."""
    rng = np.random.default_rng(5)
    y = np.where(rng.random(3000) < 0.3, rng.gamma(1.5, 60.0, 3000), 0.0)
    ranking = metrics.normalized_gini_on(list(y))
    for p in [y, -y, np.zeros(3000), np.round(rng.gamma(1.0, 20.0, 3000)), y + rng.normal(0, 30, 3000)]:
        assert ranking(p) == metrics.normalized_gini(y, p)
    assert ranking(Y * 600) == metrics.normalized_gini(y, Y * 600)  # 3,000 rankings of 5 values' ties
    assert math.isnan(metrics.normalized_gini_on([0.0, 0.0, 0.0])([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="equal length"):
        ranking(y[:10])


def test_degenerate_inputs_give_nan():
    assert math.isnan(metrics.normalized_gini([0, 0, 0], [1, 2, 3]))
    assert math.isnan(metrics.spearman([1, 2, 3], [5, 5, 5]))


def test_spearman():
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_decile_table():
    p = np.arange(20, dtype=float)
    table = metrics.decile_table(2 * p, p)
    assert [row["decile"] for row in table] == list(range(1, 11))
    assert all(row["customers"] == 2 for row in table)
    assert table[0]["mean_predicted"] == pytest.approx(18.5)
    assert table[0]["mean_actual"] == pytest.approx(37.0)
    assert table[-1]["mean_predicted"] == pytest.approx(0.5)
    uneven = metrics.decile_table(np.ones(23), np.arange(23.0))
    assert sum(row["customers"] for row in uneven) == 23
    assert {row["customers"] for row in uneven} == {2, 3}


def test_regression_metrics_and_per_stage():
    block = metrics.regression_metrics([1, 2, 3], [2, 2, 5])
    assert set(block) == {"mae", "rmse", "spearman", "normalized_gini", "predicted_total"}
    assert block["predicted_total"] == pytest.approx(9.0)
    frame = pd.DataFrame(
        {"stage": ["a", "a", "b"], "y": [1.0, 2.0, 3.0], "m": [2.0, 2.0, 5.0]}
    )
    stages = metrics.per_stage_errors(frame, "stage", "y", ["m"])
    assert stages["a"]["customers"] == 2
    assert stages["a"]["m"]["mae"] == pytest.approx(0.5)
    assert stages["a"]["m"]["rmse"] == pytest.approx(math.sqrt(0.5))
    assert stages["b"]["m"]["mae"] == pytest.approx(2.0)
    assert stages["b"]["actual_mean"] == pytest.approx(3.0)


def test_weighted_gini_equals_the_gini_of_the_repeated_customers():
    # the bootstrap's weighting (one sort) must give the Gini of customers repeated w times, ties
    # (a repeated customer ties with itself) included
    rng = np.random.default_rng(3)
    y = np.round(np.where(rng.random(400) < 0.3, rng.gamma(2.0, 30.0, 400), 0.0))
    p = np.round(y + rng.normal(0.0, 25.0, 400), -1)  # rounded: many tied predictions
    w = rng.poisson(1.0, 400)
    order, y_sorted, group = metrics._sorted_groups(y, p)
    weighted = metrics._weighted_gini(y_sorted, group, w[order].astype(float))
    assert weighted == pytest.approx(metrics.gini(np.repeat(y, w), np.repeat(p, w)), abs=1e-12)


def test_paired_gini_gain_and_its_noise():
    rng = np.random.default_rng(5)
    n = 4000
    y = np.where(rng.random(n) < 0.3, rng.gamma(2.0, 30.0, n), 0.0)
    weak = y + rng.normal(0.0, 60.0, n)
    strong = y + rng.normal(0.0, 20.0, n)
    gain, se = metrics.paired_gini_gain(y, weak, strong)
    assert gain == pytest.approx(metrics.normalized_gini(y, strong) - metrics.normalized_gini(y, weak))
    assert gain > 0.1 and 0.0 < se < gain / 5
    # a ranking against itself: no gain, no noise; the same seed gives the same SE
    assert metrics.paired_gini_gain(y, weak, weak) == (0.0, 0.0)
    assert metrics.paired_gini_gain(y, weak, strong)[1] == se
    # two rankings that differ by noise only: a small gain within a few standard errors
    other = y + rng.normal(0.0, 60.0, n)
    tie_gain, tie_se = metrics.paired_gini_gain(y, weak, other)
    assert abs(tie_gain) < 3 * tie_se
