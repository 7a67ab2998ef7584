"""The Pareto/NBD fit (``btyd._pareto_fit``): few likelihood evaluations, the published CDNOW
estimates, and a store whose optimum lies at an edge of the parameter space recognised as such."""

import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter

from clv_platform.models import btyd
from clv_platform.models.datasets import load_dataset

EVALUATION_LIMIT = 5000
"""The counter gives up here, so a fit that walks fails in seconds: Nelder-Mead from the fixed
starts (the fit before) walked its 20,000-iteration cap from both starts on a 300-customer store
of this kind, 19 minutes for one fit (on the 100-customer store below it stopped after 1,939)."""


class TooManyEvaluations(Exception):
    pass


@pytest.fixture
def evaluations(monkeypatch):
    """Counts evaluations of the Pareto/NBD likelihood (the cost of a fit: two ``hyp2f1`` per row),
    the calls whose value is not finite, and the largest s asked for."""
    calls = {"n": 0, "not_finite": 0, "max_s": 0.0}
    real = btyd._ParetoLikelihood._negative_log_likelihood

    def counted(self, params):
        calls["n"] += 1
        if calls["n"] > EVALUATION_LIMIT:
            raise TooManyEvaluations(f"more than {EVALUATION_LIMIT} likelihood evaluations")
        value = real(self, params)
        calls["not_finite"] += not np.isfinite(value)
        calls["max_s"] = max(calls["max_s"], float(params[2]))
        return value

    monkeypatch.setattr(btyd._ParetoLikelihood, "_negative_log_likelihood", counted)
    return calls


def same_dropout_store(customers: int = 100, days: int = 540, seed: int = 6) -> pd.DataFrame:
    """Calibration summary of a store whose customers all have a 200-day mean lifetime.

    Purchase rates vary (gamma), dropout rates do not: the Pareto/NBD likelihood keeps rising as
    s, beta -> inf with s / beta fixed, the limit where the gamma spread of dropout rates vanishes.
    """
    rng = np.random.default_rng(seed)
    start, rows = pd.Timestamp("2023-01-01"), []
    for i in range(customers):
        first, rate, life = int(rng.integers(0, days // 2)), rng.gamma(0.8, 1 / 30), rng.exponential(200.0)
        day = first
        while day < days and day - first <= life:
            rows.append((f"c{i}", start + pd.Timedelta(days=day), 10.0 + float(rng.gamma(3, 15))))
            day += int(rng.exponential(1 / rate)) + 1
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    return btyd.summarize(transactions, start + pd.Timedelta(days=days - 1))


def test_same_dropout_rate_store_is_a_boundary_fit_within_few_evaluations(evaluations):
    summary = same_dropout_store()
    combos = btyd.condense(summary)
    assert len(summary) == 100 and len(combos) == 99
    model = btyd.fit_btyd(summary, btyd.PARETO_NBD)
    # two starts, each stopped once s passes PARETO_EDGE_SHAPE (Nelder-Mead: 1,939 evaluations; BFGS
    # run on to the wall where lifetimes' likelihood turns NaN: 424, 67 of them NaN, s up to 320 -
    # the probes of that wall, slow hyp2f1 calls, were most of the fit's time on real stores)
    assert 100 < evaluations["n"] <= 300
    assert evaluations["not_finite"] == 0 and evaluations["max_s"] < 2 * btyd.PARETO_EDGE_SHAPE
    params = model.transactions.params_
    # it stopped on the ray to the edge: s and beta large, their ratio the common dropout rate
    assert params["s"] > 50 and params["beta"] > 1000
    assert params["s"] / params["beta"] / btyd.DAYS_PER_WEEK == pytest.approx(1 / 200, rel=0.2)  # per day
    problem = btyd.degeneracy(model, summary)
    assert problem.startswith(btyd.BOUNDARY) and "s, beta -> inf" in problem

    # auto does not serve it while another family is usable, and says why
    auto = btyd.fit_auto(summary, fits={btyd.PARETO_NBD: model})
    rows = {(row["family"], row["penalizer"]): row for row in auto.selection}
    assert rows[(btyd.PARETO_NBD, 0.0)]["status"] == "degenerate"
    assert "s, beta -> inf" in rows[(btyd.PARETO_NBD, 0.0)]["reason"]
    assert auto.model != btyd.PARETO_NBD and btyd.degeneracy(auto, summary) is None


def annual_buyers_store(customers: int = 1200, seed: int = 4) -> pd.DataFrame:
    """Calibration summary (at 2024-10-31) of a gift store: 60 % of the customers buy once a year
    around 10 December (a fifth of them stop each year), the others on gamma-distributed rates
    with exponential lifetimes. The Pareto/NBD likelihood rises along s, beta -> inf, and lifetimes'
    turns NaN there already below s = 100 (``PARETO_EDGE_SHAPE`` was 100)."""
    rng = np.random.default_rng(seed)
    end, rows = pd.Timestamp("2024-10-31"), []
    for c in range(customers):
        if rng.random() < 0.6:
            year = int(rng.integers(2021, 2024))
            while year <= 2023:
                day = pd.Timestamp(f"{year}-12-10") + pd.Timedelta(days=int(rng.integers(-12, 12)))
                rows.append((f"g{c}", day, float(rng.lognormal(4.2, 0.5))))
                if rng.random() < 0.2:
                    break
                year += 1
        else:
            t = pd.Timestamp("2021-01-01") + pd.Timedelta(days=int(rng.integers(0, 1000)))
            rate = max(rng.gamma(0.8, 1 / 60), 1 / 3000)
            until = t + pd.Timedelta(days=float(rng.exponential(500)))
            while t <= end and t < until:
                rows.append((f"a{c}", t, float(rng.lognormal(3.8, 0.6))))
                t = t + pd.Timedelta(days=min(3000, max(1, int(rng.exponential(1 / rate)))))
    return btyd.summarize(pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]), end)


def test_a_fit_on_its_way_to_the_edge_stops_before_the_likelihood_gives_out(evaluations):
    """Stopped at s = 100, BFGS ran into the NaN wall first and probed it (414 evaluations, 86 of
    them not finite, s asked up to 154; those near the wall the slowest, 4.9 s for this fit)."""
    summary = annual_buyers_store()
    model = btyd.fit_btyd(summary, btyd.PARETO_NBD)
    assert evaluations["n"] <= 300 and evaluations["not_finite"] <= 10
    params = model.transactions.params_
    assert params["s"] > btyd.PARETO_EDGE_SHAPE and params["beta"] > 1000
    problem = btyd.degeneracy(model, summary)
    assert problem.startswith(btyd.BOUNDARY) and "s, beta -> inf" in problem
    auto = btyd.fit_auto(summary, fits={btyd.PARETO_NBD: model})
    assert auto.model == btyd.MBGNBD and btyd.degeneracy(auto, summary) is None


WALL_SHAPE = 20.0
"""Where the likelihood of the test below gives out: lifetimes' turns NaN at s = 18 on an
Online-Retail-shaped export (``tools/backtest_csvs.py``, calibrated to 2011-06-01), below
``PARETO_EDGE_SHAPE``."""
WALL_LIMIT, EVALUATIONS_LIMIT = 10, 250
"""Measured on this test store: 3 evaluations at the wall and 208 in all; 40 and 308 before."""


def test_a_fit_pressed_against_a_wall_below_the_edge_shape_stops_there(monkeypatch):
    """Without the wall rule BFGS bounced its line searches off such a wall until they lost
    precision (on the export above: 150 of the fit's 395 evaluations, 4.1 of its 4.8 s)."""
    real = btyd._ParetoLikelihood._negative_log_likelihood
    calls = {"n": 0, "wall": 0}

    def walled(self, params):
        calls["n"] += 1
        if params[2] > WALL_SHAPE:
            calls["wall"] += 1
            return np.nan
        return real(self, params)

    monkeypatch.setattr(btyd._ParetoLikelihood, "_negative_log_likelihood", walled)
    # _pareto_fit itself: fit_btyd's Pareto/NBD fits are memoized per input for the suite (conftest)
    combos = btyd.condense(same_dropout_store())
    fitter = btyd._pareto_fit(combos["frequency"], combos["recency"], combos["T"], combos["weight"], 0.0)
    assert calls["wall"] <= WALL_LIMIT and calls["n"] <= EVALUATIONS_LIMIT
    assert btyd.PARETO_WALL_MIN_SHAPE < fitter.params_["s"] <= WALL_SHAPE
    assert "s, beta -> inf" in fitter.boundary_


def test_cdnow_fit_reproduces_the_published_estimates_in_few_evaluations(evaluations):
    """Fader, Hardie & Lee's Pareto/NBD on the CDNOW 1/10 sample: r 0.553, alpha 10.578,
    s 0.606, beta 11.669; an interior optimum (not at an edge); Nelder-Mead needed about 960."""
    loaded = load_dataset("cdnow-sample")
    combos = btyd.condense(btyd.summarize(loaded.transactions, loaded.calibration_end, loaded.holdout_end))
    fitter = btyd._pareto_fit(combos["frequency"], combos["recency"], combos["T"], combos["weight"], 0.0)
    assert evaluations["n"] <= 600
    params = fitter.params_
    assert params["r"] == pytest.approx(0.553, abs=5e-4) and params["s"] == pytest.approx(0.606, abs=5e-4)
    assert params["alpha"] == pytest.approx(10.578, abs=5e-4) and params["beta"] == pytest.approx(11.669, abs=5e-4)
    assert fitter.boundary_ is None


def test_a_warm_start_from_a_fit_at_the_edge_still_finds_an_interior_optimum():
    """A warm start is the nearest window's fit (backtest windows, training windows), at the edge
    too; started beyond ``PARETO_EDGE_SHAPE`` the fit used to stop at its first iterate, a boundary
    fit, whatever the data. CDNOW's optimum is interior (s = 0.606)."""
    loaded = load_dataset("cdnow-sample")
    combos = btyd.condense(btyd.summarize(loaded.transactions, loaded.calibration_end, loaded.holdout_end))
    at_edge = {"r": 0.553, "alpha": 10.578, "s": 80.0, "beta": 80.0 * 11.669 / 0.606}
    fitter = btyd._pareto_fit(combos["frequency"], combos["recency"], combos["T"], combos["weight"], 0.0,
                              start=at_edge)
    assert fitter.boundary_ is None
    assert fitter.params_["s"] == pytest.approx(0.606, abs=2e-3) and fitter.params_["r"] == pytest.approx(0.553, abs=2e-3)


def test_the_edge_test_tells_an_interior_optimum_from_a_ray_still_rising():
    """``_pareto_edge`` on CDNOW: at the optimum no ray gains; a point short of the optimum on
    the (s, beta) ray, where the likelihood still rises along it, is reported as that edge."""
    loaded = load_dataset("cdnow-sample")
    combos = btyd.condense(btyd.summarize(loaded.transactions, loaded.calibration_end, loaded.holdout_end))
    objective = btyd._ParetoLikelihood(combos["frequency"], combos["recency"], combos["T"], combos["weight"], 0.0)
    optimum = objective.log_start({"r": 0.55328, "alpha": 10.5777, "s": 0.606239, "beta": 11.6687})
    assert btyd._pareto_edge(objective, optimum, objective(optimum)) is None
    short = optimum - np.log(1.5) * np.array([0.0, 0.0, 1.0, 1.0])
    assert btyd.PARETO_RAYS[0][0] in btyd._pareto_edge(objective, short, objective(short))


def nobody_churns_store(customers: int = 600, days: int = 120, seed: int = 3) -> pd.DataFrame:
    """Calibration summary of a store whose customers never stop buying (gamma purchase rates, no
    dropout) over a short history: the Pareto/NBD likelihood keeps rising as s -> 0."""
    rng = np.random.default_rng(seed)
    start, rows = pd.Timestamp("2024-09-01"), []
    for i in range(customers):
        day, rate = int(rng.integers(0, days - 7)), rng.gamma(1.4, 1 / 25)
        while day < days:
            rows.append((f"c{i}", start + pd.Timedelta(days=day), 20.0 + float(rng.gamma(3, 10))))
            day += int(rng.exponential(1 / rate)) + 1
    transactions = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    return btyd.summarize(transactions, start + pd.Timedelta(days=days - 1))


def test_a_store_where_nobody_churns_is_a_boundary_fit_stopped_early(evaluations):
    """Before: BFGS walked s towards 0 for 600 to 960 evaluations (12-16 s a fit on 1,000-1,600
    customers of such a store, and again in every bootstrap refit), the predictions not moving."""
    summary = nobody_churns_store()
    model = btyd.fit_btyd(summary, btyd.PARETO_NBD)
    assert evaluations["n"] <= 350  # before: 706
    problem = btyd.degeneracy(model, summary)
    assert problem.startswith(btyd.BOUNDARY) and "s -> 0 (nobody drops out)" in problem
    # at the stop almost nobody drops out: everyone alive, as in the limit (before: 0.999999 at least)
    assert btyd.prediction_problem(model, summary) is None
    assert float(np.min(model.probability_alive(summary))) > 0.9999


def test_the_likelihood_split_over_threads_is_lifetimes_value_to_the_last_bit(monkeypatch):
    """The fit's likelihood computes its per-customer terms in parts on threads and puts them back
    together; the value must be lifetimes' own (the same BFGS path, the same fitted parameters),
    including the penalty, the weights and the inf of a parameter at or below 0."""
    monkeypatch.setattr(btyd, "LIKELIHOOD_THREADS", 3)
    rng = np.random.default_rng(3)
    n = 10_001  # parts of 3,333, 3,334 and 3,334 rows
    T = rng.random(n) * 100 + 1
    frequency = rng.poisson(2, n)
    recency = np.where(frequency > 0, T * rng.random(n), 0.0)
    weights = rng.integers(1, 4, n).astype(float)
    objective = btyd._ParetoLikelihood(frequency, recency, T, weights, 0.01)
    try:
        assert [part.stop - part.start for part in objective._parts] == [3333, 3334, 3334]
        draws = [np.exp(rng.normal(0.0, 1.5, 4)) for _ in range(20)] + [np.array([0.5, 1.0, 0.0, 1.2])]
        for params in draws:
            with np.errstate(all="ignore"):
                expected = ParetoNBDFitter._negative_log_likelihood(
                    params, objective.frequency, objective.recency, objective.T, objective.weights, 0.01)
            value = objective._negative_log_likelihood(params)
            assert value == expected or (np.isnan(value) and np.isnan(expected)), params
    finally:
        objective.close()
    # a store too small to split is evaluated in one part, without threads
    small = btyd._ParetoLikelihood(frequency[:3999], recency[:3999], T[:3999], weights[:3999], 0.0)
    assert small._parts == [] and small._pool is None
