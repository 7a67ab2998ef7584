"""The BTYD's predictive spend quantiles (P10 / P50 / P90 of a customer's spend over the horizon, as
multiples of its mean: the interval and the median point rule), drawn once per coarse key instead
of once per customer.

Two facts make this cheap without changing what the intervals mean:

* The ratios do not depend on the customer's mean repeat spend m. Under Gamma-Gamma a customer's
  spend over the horizon is S = (v + x m) * S' with S' = Gamma(N p) / Gamma(q + p x) independent
  of m (N: the purchases, from (x, t_x, T) only), and the mean order value is proportional to
  (v + x m) as well; so every quantile / mean ratio is that of m = 0. Without a spend model S is
  N times the population mean, again a constant factor.
* They change slowly with t_x and T: drawing them at t_x and T rounded to whole weeks
  (``KEY_DAYS``) moves them by much less than the Monte Carlo error of the 200 draws behind each
  (measured on the 100k demo store, see README "Benchmark").

So a store has at most (distinct x) x (weeks of history)^2 / 2 interval keys whatever its size
(31,105 for the 98,600 customers of the 100k demo store, where the exact (x, t_x, T, m) rows are
75,717); the draws of a key are a function of the set of keys drawn together only (sorted, drawn
in chunks with seeds 0, 1, ...), so batches of any size give every customer the same values.

The nightly run draws each key once per stored BTYD fit and keeps it (``interval_cache``): a full
draw (a refit, a training run, changed draw settings) seeds chunk k of the sorted keys with
``seed + k`` as above; a night that reuses the fit draws only its keys missing from the cache,
chunk k of those (sorted) seeded with the numpy SeedSequence ``[seed + k, cutoff day number, rows
the cache held]`` (``stream``). Each night's new keys so get streams of their own, reproducible from
the fit, the settings and the nights before, and a key already drawn keeps its values for the life
of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv_platform.models import btyd
from clv_platform.transforms.features import btyd_days

KEY_DAYS = 7
"""Width in days of the t_x and T bins of an interval key (rounded to the nearest bin)."""
_X, _TX = 10**8, 10**4
"""Key code = x * 10^8 + t_x bin * 10^4 + T bin: bins below 10^4 weeks (190 years of history)."""

KEY_SQL = (f"frequency * {_X} + ((observed_recency_days + {KEY_DAYS // 2}) // {KEY_DAYS}) * {_TX}"
           f" + (observed_T_days + {KEY_DAYS // 2}) // {KEY_DAYS}")
"""The key code in DuckDB over the feature table's integer day columns in observed time
(``features.OBSERVED_COLUMNS``; same as ``frame_keys``)."""


def interval_keys(frequency, recency_days, T_days) -> np.ndarray:
    """The int64 key code of each customer from integer days (``KEY_SQL`` in numpy)."""
    x = np.asarray(frequency).astype(np.int64)
    tx = (np.asarray(recency_days).astype(np.int64) + KEY_DAYS // 2) // KEY_DAYS
    age = (np.asarray(T_days).astype(np.int64) + KEY_DAYS // 2) // KEY_DAYS
    if (tx >= _TX).any() or (age >= _TX).any() or (x < 0).any() or (tx < 0).any():
        raise ValueError("interval keys need 0 <= t_x <= T below 10^4 weeks and x >= 0")
    return x * _X + tx * _TX + age


def frame_keys(frame: pd.DataFrame) -> np.ndarray:
    """``interval_keys`` of a feature frame's customers (``frequency`` with recency and age as the BTYD
    reads them, ``features.btyd_days``): the keys scoring, training and the backtest look the ratios up by."""
    recency_days, age_days = btyd_days(frame)
    return interval_keys(frame["frequency"], recency_days, age_days)


def key_summary(codes: np.ndarray) -> pd.DataFrame:
    """The BTYD summary (weeks) a key stands for, with m = 0."""
    codes = np.asarray(codes, dtype=np.int64)
    return pd.DataFrame({
        "frequency": codes // _X,
        "recency": (codes % _X // _TX) * KEY_DAYS / btyd.DAYS_PER_WEEK,
        "T": (codes % _TX) * KEY_DAYS / btyd.DAYS_PER_WEEK,
        "monetary": 0.0,
    })


POSITIVE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
"""Levels of the positive-part quantiles (the spend draws > 0 of a key), as in
``clv.objective.POSITIVE_LEVELS``: the mixture median point rule reads the level 1 - 0.5 / p."""
LABEL_SEED_OFFSET = 1_000_000
"""The purchase draws over the label window use seed ``seed + LABEL_SEED_OFFSET + chunk index``,
a stream apart from the spend draws', so adding them leaves the P10 / P50 / P90 unchanged."""


@dataclass(frozen=True)
class IntervalTable:
    """P10 / P50 / P90 ratios of each key (sorted unique codes) and, for the mixture median point
    rule, the BTYD's P(any spend over the horizon), P(any purchase over the label window) and the
    positive-part quantile ratios (keys x ``POSITIVE_LEVELS``, quantile / positive-part mean)."""

    codes: np.ndarray
    p10_ratio: np.ndarray
    p50_ratio: np.ndarray
    p90_ratio: np.ndarray
    p_buy: np.ndarray | None = None
    p_buy_label: np.ndarray | None = None
    positive_ratios: np.ndarray | None = None

    def positions(self, codes: np.ndarray) -> np.ndarray:
        """Row of each code in this table; every code must be in it."""
        codes = np.asarray(codes, dtype=np.int64)
        at = np.searchsorted(self.codes, codes)
        if at.size and ((at >= self.codes.size) | (self.codes[np.minimum(at, self.codes.size - 1)] != codes)).any():
            raise KeyError("a customer's interval key is missing from the interval table")
        return at

    def lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P10 ratio, P50 ratio, P90 ratio) of each code; every code must be in the table."""
        at = self.positions(codes)
        return self.p10_ratio[at], self.p50_ratio[at], self.p90_ratio[at]

    def lookup_mixture(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(buy over the horizon), P(buy over the label window), positive-part ratios) per code."""
        if self.p_buy is None or self.positive_ratios is None:
            raise ValueError("this interval table was drawn without the positive-part quantiles")
        at = self.positions(codes)
        label = self.p_buy if self.p_buy_label is None else self.p_buy_label
        return self.p_buy[at], label[at], self.positive_ratios[at]


def positive_quantile_ratios(sample: np.ndarray, levels=POSITIVE_LEVELS) -> np.ndarray:
    """Per row of ``sample`` (customers x draws): the quantiles of its positive draws at ``levels``
    (numpy's default linear interpolation, as ``np.quantile`` of the positive draws alone) divided by
    their mean; 0 for a row without positive draws."""
    ordered = np.sort(np.asarray(sample, dtype=float), axis=1)
    n, draws = ordered.shape
    positive = ordered > 0
    k = positive.sum(axis=1)
    zeros = draws - k
    total = np.where(positive, ordered, 0.0).sum(axis=1)
    mean = np.where(k > 0, total / np.maximum(k, 1), 1.0)
    rows = np.arange(n)
    out = np.zeros((n, len(levels)))
    for j, level in enumerate(levels):
        position = level * np.maximum(k - 1, 0)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, np.maximum(k - 1, 0))
        frac = position - low
        a = ordered[rows, np.minimum(zeros + low, draws - 1)]
        b = ordered[rows, np.minimum(zeros + high, draws - 1)]
        out[:, j] = np.where(k > 0, (a + (b - a) * frac) / mean, 0.0)
    return out


def _seed(seed: int, stream: tuple[int, ...]):
    """``seed`` alone (a full draw: the seeds as ever), or the SeedSequence entropy ``[seed, *stream]``."""
    return [int(seed), *map(int, stream)] if stream else int(seed)


def interval_table(model: btyd.BTYDModel, codes, horizon_weeks: float, draws: int = 200, seed: int = 0,
                   chunk: int = 20_000, levels: tuple[float, float] = (0.10, 0.90),
                   label_weeks: float | None = None, mixture: bool = True,
                   stream: tuple[int, ...] = ()) -> IntervalTable:
    """Draw the ``levels`` quantiles and the median of spend over ``horizon_weeks`` for each
    distinct key of ``codes`` (``BTYDModel.sample_spend``, ``draws`` per key, chunk k seeded
    ``seed + k`` as ``BTYDModel.spend_quantiles``) and divide them by the closed-form mean of the
    same key; 0 where that mean is 0. From the same draws: P(spend > 0) and the positive-part
    quantile ratios (``positive_quantile_ratios``). With ``label_weeks`` (the label window, shorter
    than the horizon) P(any purchase over it) is drawn per key too (seed stream
    ``LABEL_SEED_OFFSET`` apart); without it the label-window P(buy) is the horizon's. With
    ``mixture=False`` neither the label-window draws nor the positive-part quantiles are made (the
    table's ``positive_ratios`` is None): they serve only the mixture point rule, and cost 11 % of
    a nightly BTYD evaluation at 300k customers when the served model does not use it. The
    P10 / P50 / P90 and P(buy) are the same either way (same draws, same seeds). A non-empty
    ``stream`` (a night's draw of the keys missing from the interval cache, see the module
    docstring) seeds chunk k with the SeedSequence ``[seed + k, *stream]`` instead of ``seed + k``."""
    unique = np.unique(np.asarray(codes, dtype=np.int64))
    summary = key_summary(unique)
    quantiles = np.empty((3, len(unique)))
    p_buy = np.empty(len(unique))
    positive = np.empty((len(unique), len(POSITIVE_LEVELS))) if mixture else None
    p_label = (None if not mixture or label_weeks is None or float(label_weeks) == float(horizon_weeks)
               else np.empty(len(unique)))
    for k, start in enumerate(range(0, len(unique), chunk)):
        part = summary.iloc[start:start + chunk]
        sample = model.sample_spend(part, horizon_weeks, draws, _seed(seed + k, stream), chunk)
        rows = slice(start, start + chunk)
        quantiles[:, rows] = np.quantile(sample, (levels[0], 0.5, levels[1]), axis=1)
        p_buy[rows] = (sample > 0).mean(axis=1)
        if positive is not None:
            positive[rows] = positive_quantile_ratios(sample)
        if p_label is not None:
            counts = model.transactions.sample_purchases(
                float(label_weeks), part["frequency"].to_numpy(dtype=float), part["recency"].to_numpy(dtype=float),
                part["T"].to_numpy(dtype=float), draws,
                np.random.default_rng(_seed(seed + LABEL_SEED_OFFSET + k, stream)))
            p_label[rows] = (counts > 0).mean(axis=1)
    low, median, high = quantiles
    mean = model.expected_purchases(summary, horizon_weeks) * model.expected_average_order_value(summary)
    safe = np.where(mean > 0, mean, 1.0)

    def ratio(quantile: np.ndarray) -> np.ndarray:
        return np.where(mean > 0, quantile / safe, 0.0)

    return IntervalTable(unique, ratio(low), ratio(median), ratio(high), p_buy, p_label, positive)
