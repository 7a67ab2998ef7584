"""A store where nobody stops buying (gamma purchase rates, no dropout; benchmarks/awkward_stores.py
nochurn.csv in small): BG/NBD does not converge on it at any penalizer on most machines (lifetimes'
optimizer converged there at penalizer 0.01 on one: ``bgnbd_never_converges`` makes the failure
certain where a test is about what follows it)."""

import numpy as np
import pandas as pd


def no_churn_transactions(customers: int = 800, seed: int = 0) -> pd.DataFrame:
    """customer_id, order_date (ISO text), amount: first orders over 2022, orders until 2023-12-30."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        day = pd.Timestamp("2022-01-01") + pd.Timedelta(days=int(rng.integers(0, 365)))
        rate = max(rng.gamma(0.8, 1 / 20), 1 / 2000)  # purchases a day
        while day < pd.Timestamp("2023-12-31"):
            rows.append((f"c{c}", day.date().isoformat(), round(float(rng.lognormal(3.5, 0.6)), 2)))
            day += pd.Timedelta(days=min(2000, max(1, int(rng.exponential(1 / rate)))))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def bgnbd_never_converges(monkeypatch) -> None:
    """Every BG/NBD fit fails as lifetimes fails it ("The model did not converge. ..."), at every
    penalizer. Whether lifetimes' gradient fit converges on the no-churn store at one of the fallback
    penalizers depends on the machine's floating point (it did at 0.01 on a 2-core machine of
    5 December 2026, at none on the ones before), so a test of the fallbacks makes it certain."""
    from lifetimes.utils import ConvergenceError

    from clv_platform.models import btyd

    fit = btyd._fit_transactions

    def failing(frequency, recency, T, weights, model, *args, **kwargs):
        if model == btyd.BGNBD:
            raise ConvergenceError("The model did not converge. Try adding a larger penalizer to see if that "
                                   "helps convergence.")
        return fit(frequency, recency, T, weights, model, *args, **kwargs)

    monkeypatch.setattr(btyd, "_fit_transactions", failing)
