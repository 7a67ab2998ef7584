"""BTYD baseline: the CDNOW 1/10 sample must reproduce Fader, Hardie & Lee's published results."""

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter

from clv_platform.models import btyd
from clv_platform.models.datasets import load_dataset


def sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def cdnow():
    loaded = load_dataset("cdnow-sample")
    summary = btyd.summarize(loaded.transactions, loaded.calibration_end, loaded.holdout_end)
    return loaded, summary


@pytest.fixture(scope="module")
def bgnbd(cdnow):
    return btyd.fit_btyd(cdnow[1], btyd.BGNBD)


@pytest.fixture(scope="module")
def pareto(cdnow):
    return btyd.fit_btyd(cdnow[1], btyd.PARETO_NBD)


def test_summarize_follows_the_protocol():
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "order_date": pd.to_datetime(
                ["1997-01-01", "1997-01-01", "1997-01-15", "1997-02-01", "1997-02-02", "1997-01-10"]
            ),
            "amount": [10.0, 5.0, 20.0, 30.0, 99.0, 7.0],
        }
    )
    summary = btyd.summarize(transactions, "1997-01-20", "1997-03-01")
    assert list(summary.index) == ["a", "c"]
    a, c = summary.loc["a"], summary.loc["c"]
    assert a["frequency"] == 1
    assert a["recency"] == pytest.approx(14 / 7)
    assert a["T"] == pytest.approx(19 / 7)
    assert a["monetary"] == pytest.approx(20.0)
    assert a["calibration_spend"] == pytest.approx(35.0)
    assert (a["holdout_purchases"], a["holdout_spend"]) == (1, 30.0)
    assert (c["frequency"], c["recency"], c["monetary"]) == (0, 0.0, 0.0)
    assert c["T"] == pytest.approx(10 / 7)


def test_cdnow_sample_counts(cdnow):
    _, summary = cdnow
    assert len(summary) == 2357
    assert summary["frequency"].sum() == 2457
    assert summary["holdout_purchases"].sum() == 1882


def test_bgnbd_reproduces_published_parameters(bgnbd):
    params = bgnbd.transactions.params_
    assert [sig3(params[k]) for k in ("r", "alpha", "a", "b")] == [0.243, 4.41, 0.793, 2.43]
    assert params["alpha"] == pytest.approx(4.414, abs=5e-4)
    assert params["b"] == pytest.approx(2.426, abs=5e-4)
    assert bgnbd.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    expected = bgnbd.transactions.conditional_expected_number_of_purchases_up_to_time(39, 2, 30.43, 38.86)
    assert float(expected) == pytest.approx(1.226, abs=5e-4)


def test_pareto_nbd_reproduces_published_parameters(pareto):
    params = pareto.transactions.params_
    assert [sig3(params[k]) for k in ("r", "alpha", "s", "beta")] == [0.553, 10.6, 0.606, 11.7]
    assert params["alpha"] == pytest.approx(10.578, abs=5e-4)
    assert params["beta"] == pytest.approx(11.669, abs=5e-4)


def test_gamma_gamma_reproduces_published_parameters(bgnbd):
    params = bgnbd.spend.fitter.params_
    assert [sig3(params[k]) for k in ("p", "q", "v")] == [6.25, 3.74, 15.4]
    assert params["v"] == pytest.approx(15.44, abs=5e-3)
    population_mean = bgnbd.spend.fitter.conditional_expected_average_profit(0, 0.0)
    assert bgnbd.spend.population_mean == pytest.approx(population_mean)
    assert bgnbd.spend.expected_average_order_value([0], [0.0])[0] == pytest.approx(population_mean)


def test_holdout_forecast_and_purchases_by_x(cdnow, bgnbd):
    loaded, summary = cdnow
    horizon = btyd.holdout_weeks(loaded.calibration_end, loaded.holdout_end)
    assert horizon == pytest.approx(39.0)
    predicted = bgnbd.expected_purchases(summary, horizon)
    assert predicted.sum() == pytest.approx(1653, abs=1)

    table = btyd.purchases_by_frequency(summary, {"bgnbd": predicted})
    assert [row["x"] for row in table] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert [row["customers"] for row in table] == [1411, 439, 214, 100, 62, 38, 29, 64]
    assert [round(row["actual"], 3) for row in table] == [0.237, 0.697, 1.393, 1.560, 2.532, 2.947, 3.862, 6.359]
    published = [0.225, 0.523, 1.044, 1.520, 2.164, 2.654, 3.504, 6.157]
    assert [row["bgnbd"] for row in table] == pytest.approx(published, abs=0.01)


def test_cumulative_tracking_week_78(cdnow, bgnbd):
    loaded, _ = cdnow
    tracking = btyd.cumulative_repeat_transactions(
        loaded.transactions, {"bgnbd": bgnbd.transactions}, loaded.calibration_end, loaded.holdout_end
    )
    assert len(tracking["weeks"]) == 78
    assert tracking["calibration_weeks"] == pytest.approx(39.0)
    assert tracking["actual"][38] == 2457
    assert tracking["totals"]["actual"] == 4339
    assert tracking["totals"]["bgnbd"] == pytest.approx(4161, abs=1)
    assert np.all(np.diff(tracking["models"]["bgnbd"]) >= 0)


@pytest.mark.parametrize("model", [btyd.BGNBD, btyd.PARETO_NBD])
def test_weighted_fit_equals_per_customer_fit(cdnow, model, bgnbd, pareto):
    _, summary = cdnow
    weighted = {btyd.BGNBD: bgnbd, btyd.PARETO_NBD: pareto}[model]
    per_row = btyd._fit_transactions(summary["frequency"], summary["recency"], summary["T"], None, model, 0.0)
    assert len(btyd.condense(summary)) < len(summary)
    np.testing.assert_allclose(
        per_row.params_.to_numpy(), weighted.transactions.params_.to_numpy(), rtol=1e-4
    )
    per_row_ll = btyd.transaction_log_likelihood(per_row, summary["frequency"], summary["recency"], summary["T"])
    assert per_row_ll == pytest.approx(weighted.log_likelihood, abs=1e-3)


def test_nonpositive_monetary_is_excluded_and_counted(cdnow):
    _, summary = cdnow
    altered = summary.copy()
    repeaters = altered.index[altered["frequency"] > 0]
    altered.loc[repeaters[:3], "monetary"] = [0.0, -5.0, 0.0]
    spend = btyd.fit_gamma_gamma(altered)
    assert spend.n_excluded_nonpositive == 3
    assert spend.n_fitted == (summary["frequency"] > 0).sum() - 3
    excluded = altered.loc[repeaters[:3]]
    aov = spend.expected_average_order_value(excluded["frequency"], excluded["monetary"])
    assert np.all((aov > 0) & (aov < spend.population_mean))


def test_zero_value_repeat_purchase_from_transactions():
    rng = np.random.default_rng(7)
    n = 300
    ids = np.repeat([f"c{i}" for i in range(n)], 3)
    days = np.tile([0, 20, 40], n) + np.repeat(rng.integers(0, 30, n), 3)
    amounts = rng.gamma(5.0, 8.0, 3 * n)
    amounts[1:3] = 0.0
    transactions = pd.DataFrame(
        {"customer_id": ids, "order_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, "D"), "amount": amounts}
    )
    summary = btyd.summarize(transactions, "2024-03-31")
    assert summary.loc["c0", "monetary"] == 0.0
    spend = btyd.fit_gamma_gamma(summary)
    assert spend.n_excluded_nonpositive == 1
    assert spend.n_fitted == n - 1


def test_clv_matches_lifetimes_monthly_formula(cdnow, bgnbd):
    _, summary = cdnow
    head = summary.iloc[:200]
    annual = 0.10
    ours = bgnbd.discounted_clv(head, horizon_weeks=12 * btyd.WEEKS_PER_MONTH, annual_discount_rate=annual)
    reference = bgnbd.spend.fitter.customer_lifetime_value(
        bgnbd.transactions,
        head["frequency"],
        head["recency"],
        head["T"],
        head["monetary"],
        time=12,
        discount_rate=(1 + annual) ** (1 / 12) - 1,
        freq="W",
    )
    np.testing.assert_allclose(ours, reference.to_numpy(), rtol=1e-9)

    scores = bgnbd.score(head, horizon_weeks=39)
    assert list(scores.columns) == ["p_alive", "expected_purchases", "expected_aov", "expected_spend", "clv"]
    assert ((scores["p_alive"] > 0) & (scores["p_alive"] <= 1)).all()
    assert (scores["clv"] <= scores["expected_spend"] + 1e-9).all()
    undiscounted = bgnbd.discounted_clv(head, horizon_weeks=39, annual_discount_rate=0.0)
    np.testing.assert_allclose(undiscounted, scores["expected_spend"], rtol=1e-9)


def test_params_dict(bgnbd):
    params = bgnbd.params()
    assert params["model"] == "bgnbd"
    assert set(params["transaction_params"]) == {"r", "alpha", "a", "b"}
    assert set(params["spend_params"]) == {"p", "q", "v"}
    assert params["n_customers"] == 2357


def test_unknown_model_rejected(cdnow):
    with pytest.raises(ValueError):
        btyd.fit_btyd(cdnow[1], "gamma_poisson")


def test_bgnbd_loglik_matches_lifetimes_unscaled():
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series({"r": 0.5, "alpha": 2.0, "a": 0.7, "b": 2.0})
    freq, rec, T = np.array([0, 2]), np.array([0.0, 5.0]), np.array([10.0, 12.0])
    direct = -BetaGeoFitter._negative_log_likelihood(
        np.log(fitter.params_.to_numpy()), freq, rec, T, np.ones(2), 0.0
    ) * 2
    assert btyd.transaction_log_likelihood(fitter, freq, rec, T) == pytest.approx(direct)


def test_non_converging_fits_fall_back_to_a_penalizer(cdnow, monkeypatch):
    """A store whose data do not converge unpenalized still gets a model, and says which penalizer."""
    from lifetimes.utils import ConvergenceError

    original = BetaGeoFitter.fit

    def fit_or_fail(self, *args, **kwargs):
        if self.penalizer_coef == 0.0:
            raise ConvergenceError("did not converge")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BetaGeoFitter, "fit", fit_or_fail)
    model = btyd.fit_btyd(cdnow[1], btyd.BGNBD)
    assert model.penalizer == btyd.FALLBACK_PENALIZERS[0]
    # a small penalty barely moves CDNOW's parameters
    assert model.params()["transaction_params"]["r"] == pytest.approx(0.243, rel=0.1)


def test_spend_model_that_never_converges_falls_back_to_the_observed_mean(cdnow, monkeypatch):
    from lifetimes import GammaGammaFitter
    from lifetimes.utils import ConvergenceError

    def never(self, *args, **kwargs):
        raise ConvergenceError("did not converge")

    monkeypatch.setattr(GammaGammaFitter, "fit", never)
    summary = cdnow[1]
    spend = btyd.fit_gamma_gamma(summary)
    usable = summary[(summary["frequency"] > 0) & (summary["monetary"] > 0)]
    assert spend.fitter is None and spend.n_fitted == len(usable)
    assert spend.population_mean == pytest.approx(usable["monetary"].mean())
