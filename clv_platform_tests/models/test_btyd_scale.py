"""BTYD cost at scale (issue 21): evaluating many horizons at once, capped fits and the
interval lookup give the values of the plain per-customer computation."""

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

from clv_platform.models import btyd
from clv_platform.models.datasets import load_dataset


@pytest.fixture(scope="module")
def cdnow():
    loaded = load_dataset("cdnow-sample")
    return btyd.summarize(loaded.transactions, loaded.calibration_end, loaded.holdout_end)


def _transactions(family: str, params: dict) -> btyd.TransactionModel:
    fitter = {btyd.BGNBD: BetaGeoFitter, btyd.MBGNBD: ModifiedBetaGeoFitter,
              btyd.PARETO_NBD: ParetoNBDFitter}[family]()
    fitter.params_ = pd.Series(params, dtype=float)
    return btyd.TransactionModel(fitter, family)


def _one_t_reference(model: btyd.TransactionModel, t: float, x, tx, age) -> np.ndarray:
    """The one-horizon formula through the general ``_beta_expectation`` (the pre-issue-21 path)."""
    r, alpha, a, b = model._p()
    if t <= 0:
        return np.zeros(x.shape)
    shape, base = r + x, alpha + age

    def g(p, rows=slice(None)):
        s, bb = shape[rows][:, None], base[rows][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            value = -np.expm1(-s * np.log1p(p * t / bb)) / p
        return np.where(p > 0, value, s * t / bb)

    beta_b = b + x + (1.0 if model.family == btyd.MBGNBD else 0.0)
    return model.conditional_probability_alive(x, tx, age) * btyd._beta_expectation(g, np.full(x.shape, a), beta_b)


@pytest.mark.parametrize(
    "family,params",
    [
        (btyd.BGNBD, {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}),
        (btyd.MBGNBD, {"r": 1.24, "alpha": 9.1, "a": 1.78, "b": 9.4}),
        (btyd.MBGNBD, {"r": 0.5, "alpha": 6.0, "a": 1e-12, "b": 1e9}),  # degenerate: Hermite nodes
    ],
)
def test_all_horizons_at_once_equal_one_horizon_at_a_time(cdnow, family, params):
    model = _transactions(family, params)
    x, tx, age = (cdnow[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    times = [0.0, 4.345, 25.714, 52.142857]
    many = model.expected_at_times(times, x, tx, age)
    assert many.shape == (len(x), len(times))
    assert (many[:, 0] == 0).all()
    for j, t in enumerate(times):
        np.testing.assert_allclose(many[:, j], _one_t_reference(model, t, x, tx, age), rtol=1e-13, atol=0)
        np.testing.assert_array_equal(many[:, j], model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, age))
    if family == btyd.BGNBD:  # and lifetimes' own hypergeometric formula where it is finite
        fitter = BetaGeoFitter()
        fitter.params_ = pd.Series(params, dtype=float)
        np.testing.assert_allclose(many[:, 2], fitter.conditional_expected_number_of_purchases_up_to_time(
            25.714, x, tx, age), rtol=1e-8)
    assert (np.diff(many, axis=1) >= -1e-12).all()  # cumulative purchases never fall


def test_score_horizons_equal_separate_scores_and_the_period_sum(cdnow):
    spend = btyd.fit_gamma_gamma(cdnow)
    model = btyd.BTYDModel(btyd.MBGNBD, _transactions(btyd.MBGNBD, {"r": 0.52, "alpha": 6.2, "a": 0.89, "b": 1.6}),
                           spend, float("nan"), len(cdnow))
    short, long = model.score_horizons(cdnow, [180 / 7, 365 / 7], 0.10)
    for horizon, got in ((180 / 7, short), (365 / 7, long)):
        pd.testing.assert_frame_equal(got, model.score(cdnow, horizon, 0.10), rtol=0, atol=0)
        # the discounted CLV spelled out period by period, one E[X(t)] call per period end
        steps = list(np.arange(btyd.WEEKS_PER_MONTH, horizon + 1e-9, btyd.WEEKS_PER_MONTH))
        if horizon - steps[-1] > 1e-9:
            steps.append(horizon)
        aov = model.expected_average_order_value(cdnow)
        clv, previous = np.zeros(len(cdnow)), np.zeros(len(cdnow))
        for t in steps:
            now = model.expected_purchases(cdnow, t)
            clv += (now - previous) * aov / 1.1 ** (t / btyd.WEEKS_PER_YEAR)
            previous = now
        np.testing.assert_allclose(got["clv"].to_numpy(), clv, rtol=1e-12)
        np.testing.assert_array_equal(got["expected_purchases"].to_numpy(), model.expected_purchases(cdnow, horizon))
    assert (long["clv"] > short["clv"]).sum() > 0.9 * len(cdnow)
    # the same horizon twice gives two equal frames (a label window as long as the horizon)
    twice = model.score_horizons(cdnow, [26.0, 26.0])
    pd.testing.assert_frame_equal(twice[0], twice[1])
