"""A store where nobody stops buying (gamma purchase rates, no dropout; benchmarks/awkward_stores.py
nochurn.csv in small): BG/NBD does not converge on it at any penalizer."""

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
