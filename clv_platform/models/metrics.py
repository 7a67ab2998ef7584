"""Backtest metrics for per-customer CLV predictions ``p`` against actual holdout spend ``y``.

Definitions follow ``shared/README.md``: MAE, RMSE, totals, Spearman rank correlation, the
normalized Gini of Wang, Liu & Miao (2019, the ZILN CLV paper) and a decile table. All functions
take array-likes of equal length and are pure numpy/pandas.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"expected two 1-d arrays of equal length, got {y.shape} and {p.shape}")
    return y, p


def mae(y_true, y_pred) -> float:
    y, p = _arrays(y_true, y_pred)
    return float(np.mean(np.abs(p - y))) if y.size else float("nan")


def paired_mae_gain(actual, base, new) -> tuple[float, float]:
    """Mean per-customer gain in absolute error of ``new`` over ``base``, |base - y| - |new - y|, and
    its paired standard error sd / sqrt(n) (0 for fewer than two customers): a lower MAE within a
    few standard errors is noise, not a win."""
    y = np.asarray(actual, dtype=float)
    gain = np.abs(np.asarray(base, dtype=float) - y) - np.abs(np.asarray(new, dtype=float) - y)
    se = float(np.std(gain, ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    return float(gain.mean()), se


def rmse(y_true, y_pred) -> float:
    y, p = _arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((p - y) ** 2))) if y.size else float("nan")


def spearman(y_true, y_pred) -> float:
    """Spearman rank correlation (average ranks for ties); NaN if either side is constant."""
    y, p = _arrays(y_true, y_pred)
    if y.size < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return float("nan")
    return float(spearmanr(y, p).statistic)


def _weighted_gini(y_sorted: np.ndarray, group: np.ndarray, weights: np.ndarray) -> float:
    """``gini`` of customers repeated ``weights`` times (all 1: ``gini`` itself), from one descending
    sort (``group`` = tie group of each sorted customer; ``_sorted_groups``). Every position of a tie
    group carries the group's mean, and a repeated customer ties with itself, so each tie group g of
    W_g positions and sum G_g adds W_g * S_(g-1) + G_g * (W_g + 1) / 2 to the summed cumulative y
    (S = the sums of the groups before it), without a sort per weighting."""
    counts = np.bincount(group, weights=weights)
    sums = np.bincount(group, weights=weights * y_sorted)
    total, n = sums.sum(), counts.sum()
    if n == 0 or total == 0:
        return float("nan")
    before = np.concatenate([[0.0], np.cumsum(sums)[:-1]])
    area = float(np.sum(counts * before + sums * (counts + 1.0) / 2.0))
    return float(2.0 * area / (total * n) - 1.0)


def _sorted_groups(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, y in that order, tie group of each position) for customers sorted by ``p`` descending."""
    order = np.argsort(-p, kind="stable")
    p_sorted = p[order]
    return order, y[order], np.concatenate([[0], np.cumsum(p_sorted[1:] != p_sorted[:-1])])


def gini(y_true, y_pred) -> float:
    """Gini of ``y`` ordered by ``p`` descending: 2 * mean(cumulative share of y) - 1.

    This is the area form used by the ZILN paper's ``gini_from_gain``: walk customers from the
    highest prediction down, track the cumulative share of actual value captured, average it.
    Tied predictions carry no ordering information, so within each tie group every customer gets
    the group's mean ``y``; that is the expectation over all orders of the tied customers (the
    statistic is linear in positions) and makes the result independent of input order.
    As in the ZILN code, the area uses right end points, so an uninformative prediction scores
    1/n rather than 0 (negligible for real customer counts; kept to match the paper's numbers).
    """
    y, p = _arrays(y_true, y_pred)
    if y.size == 0:
        return float("nan")
    _, y_sorted, group = _sorted_groups(y, p)
    return _weighted_gini(y_sorted, group, np.ones(y.size))


def normalized_gini(y_true, y_pred) -> float:
    """Gini of ``y`` ordered by ``p`` over the Gini of ``y`` ordered by itself (1.0 = perfect)."""
    y, p = _arrays(y_true, y_pred)
    return _normalized(y, p, gini(y, y))


def normalized_gini_on(y_true) -> Callable[[np.ndarray], float]:
    """``normalized_gini(y_true, p)`` for many ``p`` on the same customers, with the Gini of ``y``
    ordered by itself (the denominator, a sort of every customer) computed once: the blend search
    ranks 66 blends on one validation window (``objective.blend_weight``), ``paired_gini_gain`` two."""
    y = np.asarray(y_true, dtype=float)
    best = gini(y, y)
    return lambda y_pred: _normalized(*_arrays(y, y_pred), best)


def _normalized(y: np.ndarray, p: np.ndarray, best: float) -> float:
    if not np.isfinite(best) or best == 0:
        return float("nan")
    return float(gini(y, p) / best)


def paired_gini_gain(actual, base, new, draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """Normalized Gini of ``new`` minus that of ``base`` on the same customers, and the gain's
    bootstrap standard error (customers resampled with Poisson(1) weights, both rankings on the
    same draws, ``draws`` times; 0 for fewer than two customers): a ranking lead of a few
    thousandths on a few thousand customers is often noise, one of a few hundredths rarely."""
    y = np.asarray(actual, dtype=float)
    b, p = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    ranking = normalized_gini_on(y)
    gain = ranking(p) - ranking(b)
    if y.size < 2 or not np.isfinite(gain):
        return float(gain), 0.0
    sorts = [_sorted_groups(y, x) for x in (y, b, p)]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(int(draws)):
        w = rng.poisson(1.0, y.size).astype(float)
        best, g_base, g_new = (_weighted_gini(ys, group, w[order]) for order, ys, group in sorts)
        if np.isfinite(best) and best != 0:
            gains.append((g_new - g_base) / best)
    se = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0
    return float(gain), se


def decile_table(y_true, y_pred, n_bins: int = 10) -> list[dict]:
    """Mean predicted vs mean actual per prediction decile (decile 1 = highest predictions).

    Customers are ordered by prediction descending (stable, so ties keep input order) and cut
    into ``n_bins`` groups whose sizes differ by at most one.
    """
    y, p = _arrays(y_true, y_pred)
    order = np.argsort(-p, kind="stable")
    bins = np.empty(y.size, dtype=int)
    bins[order] = np.arange(y.size) * n_bins // max(y.size, 1)
    frame = pd.DataFrame({"decile": bins + 1, "predicted": p, "actual": y})
    table = frame.groupby("decile").agg(
        customers=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean"),
        total_predicted=("predicted", "sum"), total_actual=("actual", "sum"),
    )
    return [
        {
            "decile": int(decile),
            "customers": int(row["customers"]),
            **{k: float(v) for k, v in row.drop("customers").items()},
        }
        for decile, row in table.iterrows()
    ]


def regression_metrics(y_true, y_pred) -> dict:
    """The metric block of a backtest report for one model."""
    y, p = _arrays(y_true, y_pred)
    return {
        "mae": mae(y, p),
        "rmse": rmse(y, p),
        "spearman": spearman(y, p),
        "normalized_gini": normalized_gini(y, p),
        "predicted_total": float(p.sum()),
    }


def per_stage_errors(frame: pd.DataFrame, stage: str, actual: str, predictions: list[str]) -> dict:
    """MAE/RMSE per lifecycle stage (a column of ``frame``) for each prediction column.

    Returns ``{stage_value: {"customers", "actual_mean", model: {"mae", "rmse", "predicted_mean"}}}``
    with stages in sorted order.
    """
    out: dict = {}
    for value, group in frame.groupby(stage, sort=True):
        y = group[actual].to_numpy(dtype=float)
        block: dict = {"customers": int(len(group)), "actual_mean": float(y.mean())}
        for name in predictions:
            p = group[name].to_numpy(dtype=float)
            block[name] = {"mae": mae(y, p), "rmse": rmse(y, p), "predicted_mean": float(p.mean())}
        out[str(value)] = block
    return out
