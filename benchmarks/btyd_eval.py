"""The nightly BTYD evaluation alone on a synthetic feature frame: what `ml/btyd_scores` costs when it
reuses the stored fit (every customer's closed-form scores at both horizons, the interval table).

`python -m benchmarks.btyd_eval --customers 100000 1000000` builds a frame shaped like the demo
store's features (about 60 % one-time buyers, two years of history, in days) with fixed MBG/NBD and
Gamma-Gamma parameters (the 100k demo store's), and times the interval table and the scoring of
every customer in the asset's batches and chunks; no DuckDB, no fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

import numpy as np
import pandas as pd


def synthetic_features(customers: int, seed: int = 21) -> pd.DataFrame:
    """The BTYD columns of ``features.customer_features`` for a random store of ``customers``."""
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 731, customers)
    repeat = rng.random(customers) < 0.4
    frequency = np.where(repeat, 1 + rng.geometric(0.45, customers) - 1, 0)
    recency = np.where(frequency > 0, (rng.random(customers) * (T + 1)).astype(np.int64), 0)
    monetary = np.where(frequency > 0, rng.lognormal(3.8, 0.6, customers), 0.0)
    return pd.DataFrame({
        "customer_id": [f"c{i:09d}" for i in range(customers)],
        "frequency": frequency.astype(np.int64),
        "first_to_last_order_days": recency.astype(np.int64),
        "T_days": T.astype(np.int64),
        # observed time equals calendar time in a store without stretches lacking orders
        "observed_recency_days": recency.astype(np.int64),
        "observed_T_days": T.astype(np.int64),
        "monetary": monetary,
        "total_net_spend": monetary * (frequency + 1),
    })


def stored_model():
    """The 100k demo store's MBG/NBD and a Gamma-Gamma fit, as a stored fit rebuilds them."""
    from clv_platform.models import stored_fits

    return stored_fits.btyd_from_params({
        "model": "mbgnbd", "transaction_params": {"r": 1.2387, "alpha": 9.1067, "a": 1.7809, "b": 9.4062},
        "spend_params": {"p": 6.0, "q": 4.0, "v": 40.0}, "spend_n_fitted": 1, "spend_n_excluded_nonpositive": 0,
        "spend_population_mean": 80.0, "log_likelihood": 0.0, "n_customers": 1, "penalizer": 0.0,
    })


def run(customers: int, batch: int = 200_000, chunk: int = 20_000) -> dict:
    from clv_platform.models import btyd, btyd_intervals, clv
    from clv_platform.models.clv_assets import _score_batch

    config = clv.load_config()
    model = stored_model()
    features = synthetic_features(customers)
    started = time.perf_counter()
    codes = btyd_intervals.frame_keys(features)
    table = btyd_intervals.interval_table(model, codes, config.horizon_days / btyd.DAYS_PER_WEEK, chunk=chunk)
    interval_s = time.perf_counter() - started
    rows, spend = 0, 0.0
    for start in range(0, customers, batch):
        scored = _score_batch(None, features.iloc[start:start + batch], model, config, date(2026, 10, 31), table)
        rows += len(scored)
        spend += float(scored["expected_spend"].sum())
    return {"customers": customers, "interval_keys": int(table.codes.size), "interval_table_s": round(interval_s, 2),
            "total_s": round(time.perf_counter() - started, 2), "rows": rows, "expected_spend": spend}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    args = parser.parse_args(argv)
    for n in args.customers:
        print(json.dumps(run(n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
