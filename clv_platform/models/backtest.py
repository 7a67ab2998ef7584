"""CDNOW-style CLV backtest core: calibrate on data up to a date, score the holdout, compare models.

The backtest is built around one per-customer frame (``BTYDBacktest.frame``): the calibration
summary, a lifecycle ``stage``, the ``actual`` holdout spend and one column of predicted holdout
spend per model. Every report section (metrics, deciles, per-stage errors) is computed from that
frame by ``evaluate_frame``, so further models (xgboost, hybrids) are added by merging their
predictions in as new columns - ``run_btyd_backtest(..., extra_predictions={...})`` does that.

Models compared here:

* ``naive``: calibration spend per week since the first purchase (first purchase included, age
  floored at one week) times the holdout length;
* ``btyd``: expected holdout purchases (BG/NBD or Pareto/NBD) times the Gamma-Gamma expected
  order value.

Nothing after ``calibration_end`` is used to fit; holdout data only feed ``actual``.
"""

from __future__ import annotations

import html
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clv_platform.models import btyd, lifecycle, metrics, total_interval
from clv_platform.models.datasets import load_dataset
from clv_platform.reports import svg_chart_start, svg_value_axis

NAIVE = "naive"
BTYD = "btyd"
AUTO = "auto"

STAGES = lifecycle.STAGES
"""Per-stage errors use production's lifecycle rule (``lifecycle.stages_from_summary``)."""


def naive_prediction(summary: pd.DataFrame, horizon_weeks: float) -> pd.Series:
    """Calibration spend rate x horizon; the age is floored at one week to avoid dividing by 0.
    The age is in calendar weeks (``calendar_T``; the summary's T is in observed time), as the hybrid's naive
    component reads it (``total_net_spend / T_days``): the baseline is the rule the platform blends."""
    age = summary["calendar_T"]
    rate = summary["calibration_spend"] / age.clip(lower=1.0)
    return (rate * horizon_weeks).rename(NAIVE)


def json_safe(value):
    """Make a nested result JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


INTERVAL_DRAWS = 200
PARAMETER_REPLICATES = 20
"""Customer-bootstrap refits of the BTYD behind the parameter term of the store-total interval."""
INTERVAL_LEVEL = (0.10, 0.90)
"""Per-customer CLV interval: the 10th and 90th percentile of the predictive spend distribution."""


def _ratio(prediction: np.ndarray, btyd_mean: np.ndarray) -> np.ndarray:
    """Per-customer factor that turns BTYD spend draws into draws with the model's mean."""
    return np.where(btyd_mean > 0, prediction / np.where(btyd_mean > 0, btyd_mean, 1.0), 0.0)


def customer_intervals(draws: np.ndarray, ratio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """P10 and P90 of each customer's spend draws (optionally rescaled per customer)."""
    low, high = np.quantile(draws, INTERVAL_LEVEL, axis=1)
    if ratio is not None:
        low, high = low * ratio, high * ratio
    return low, high


def own_interval_mass(draws: np.ndarray, ratio: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """The coverage the model itself expects of its P10-P90: the mean over customers of the share
    of their own draws inside [P10, P90], bounds included as ``interval_metrics`` counts actuals.

    Spend has an atom at 0 (and a customer with no expected spend is all atom), so a closed P10-P90
    of a customer with P(no spend) between 0.1 and 0.9 holds the whole atom: 80 % is the floor of
    its mass, not its value. An observed coverage is calibrated when it matches this figure, not
    when it matches 0.80."""
    scaled = draws * np.asarray(ratio, dtype=float)[:, None]
    inside = (scaled >= low[:, None] - 1e-9) & (scaled <= high[:, None] + 1e-9)
    return float(inside.mean()) if inside.size else float("nan")


def total_draws(draws: np.ndarray, ratio: np.ndarray, factors: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Draws of the store total: per-draw sums over customers, times a parameter-bootstrap factor.

    ``factors`` (``btyd.parameter_bootstrap``) are the store totals of BTYD refits on resampled
    customers relative to the fitted one; each customer-noise draw is paired with a factor drawn
    at random, so the total's spread holds the process noise given the parameters *and* the
    uncertainty of the parameters. Without factors it is the process noise alone.
    """
    totals = ratio @ draws
    if factors is None or len(factors) == 0:
        return totals
    picks = np.random.default_rng(seed).integers(0, len(factors), len(totals))
    return totals * np.asarray(factors, dtype=float)[picks]


def interval_metrics(actual: np.ndarray, draws: np.ndarray, ratio: np.ndarray,
                     factors: np.ndarray | None = None, point: np.ndarray | None = None,
                     served: tuple[list[float], str | None] | None = None, mean_total: float | None = None,
                     horizon_ratio: float = 1.0) -> dict:
    """Coverage of the 80 % intervals: per customer and for the store total.

    Draws are the BTYD predictive spend per customer (``BTYDModel.sample_spend``); a model's
    interval rescales them by its prediction / BTYD mean, so each model keeps its own mean and
    the BTYD's shape (zero-inflation, spread). The total's draws are the per-draw sums over
    customers (customers independent given the fitted parameters) times the parameter-bootstrap
    factors (``total_draws``); ``total_p10_process`` / ``_p90_process`` are the interval without
    the parameter term, for comparison. Coverage of the customers' interval counts an actual on
    a bound as covered (most bounds are 0 and most actuals 0). With ``point`` (a point forecast
    other than the mean, e.g. the sharpened hybrid) ``point_within_interval`` is the share of
    customers whose point lies within their P10-P90.

    ``served`` = (the method's total errors, why none) as recorded at training: ``served_total_*``
    is then the interval the platform serves for this total (``total_interval.widen`` of the
    normal process interval from the customers' P10/P90 around ``mean_total``, the errors grown
    by ``horizon_ratio`` = holdout / label window), the same computation as scores/customer_clv's.
    """
    low, high = customer_intervals(draws, ratio)
    covered = (actual >= low - 1e-9) & (actual <= high + 1e-9)
    model_coverage = own_interval_mass(draws, ratio, low, high)
    buyers = actual > 0
    process_low, process_high = np.quantile(ratio @ draws, INTERVAL_LEVEL)
    total_low, total_high = np.quantile(total_draws(draws, ratio, factors), INTERVAL_LEVEL)
    actual_total = float(actual.sum())
    return {
        "level": INTERVAL_LEVEL[1] - INTERVAL_LEVEL[0],
        "customer_coverage": float(covered.mean()),
        "customer_model_coverage": model_coverage,
        "buyer_coverage": float(covered[buyers].mean()) if buyers.any() else None,
        "non_buyer_coverage": float(covered[~buyers].mean()) if (~buyers).any() else None,
        "below_p10": float((actual < low - 1e-9).mean()),
        "above_p90": float((actual > high + 1e-9).mean()),
        "mean_p10": float(low.mean()),
        "mean_p90": float(high.mean()),
        "total_p10": float(total_low),
        "total_p90": float(total_high),
        "total_p10_process": float(process_low),
        "total_p90_process": float(process_high),
        "parameter_uncertainty": factors is not None and len(factors) > 0,
        "actual_total": actual_total,
        "total_covered": bool(total_low <= actual_total <= total_high),
        **({"point_within_interval": float(((point >= low - 1e-9) & (point <= high + 1e-9)).mean())}
           if point is not None else {}),
        **(served_total(actual_total, low, high, served, mean_total, horizon_ratio) if served is not None else {}),
    }


def served_total(actual_total: float, low: np.ndarray, high: np.ndarray, served: tuple[list[float], str | None],
                 mean_total: float, horizon_ratio: float) -> dict:
    """``served_total_*`` of ``interval_metrics``: the served store-total interval and its coverage."""
    errors, reason = served
    base_low, base_high = total_interval.process_interval(mean_total, total_interval.customer_variance(low, high))
    w = total_interval.widen(mean_total, base_low, base_high, errors, horizon_ratio, reason)
    return {"served_total_p10": w["p10"], "served_total_p90": w["p90"],
            "served_total_covered": bool(w["p10"] <= actual_total <= w["p90"]),
            "served_total_process_p10": base_low, "served_total_process_p90": base_high,
            "served_total_process_covered": bool(base_low <= actual_total <= base_high),
            "served_total_rule": w["rule"], "served_total_log_errors": w["log_errors"],
            "served_total_log_half_width": w["half_width"],
            "served_total_relative_width": (w["p90"] - w["p10"]) / mean_total if mean_total > 0 else None}


def evaluate_frame(frame: pd.DataFrame, models: list[str], actual: str = "actual", stage: str = "stage") -> dict:
    """Report sections for the prediction columns ``models`` of a per-customer backtest frame.

    Returns ``{"holdout": {"actual_total", "models": {name: M}}, "deciles": {name: [...]},
    "per_stage": {...}}`` with M = mae, rmse, spearman, normalized_gini, predicted_total.
    """
    y = frame[actual].to_numpy(dtype=float)
    return {
        "holdout": {
            "actual_total": float(y.sum()),
            "models": {name: metrics.regression_metrics(y, frame[name]) for name in models},
        },
        "deciles": {name: metrics.decile_table(y, frame[name]) for name in models},
        "per_stage": metrics.per_stage_errors(frame, stage, actual, models) if stage in frame else {},
    }


COVERAGE_WINDOWS = 8
"""Most rolling windows ``rolling_total_coverage`` evaluates (the newest ones)."""
COVERAGE_REPLICATES = 10
"""Bootstrap refits per rolling window (the main window uses ``PARAMETER_REPLICATES``)."""


def coverage_window_ends(transactions: pd.DataFrame, holdout_days: int, step_days: int = 30,
                         min_history_days: int | None = None, limit: int = COVERAGE_WINDOWS) -> list[pd.Timestamp]:
    """Calibration ends of the rolling windows: every ``step_days`` back from the last day that
    leaves a full holdout of ``holdout_days``, while at least ``min_history_days`` (default: the
    holdout length) of history lie before; the newest ``limit``, oldest first."""
    dates = transactions["order_date"]
    if dates.empty:
        return []
    first, last = dates.min().normalize(), dates.max().normalize()
    history = int(holdout_days if min_history_days is None else min_history_days)
    ends, end = [], last - pd.Timedelta(days=int(holdout_days))
    while end - first >= pd.Timedelta(days=history) and len(ends) < limit:
        ends.append(end)
        end -= pd.Timedelta(days=int(step_days))
    return sorted(ends)


BIAS_WINDOWS = 4
"""Earlier validation windows (each ending by the calibration end) behind a window's bias term."""
SERVED_WINDOWS = 2
"""Validation windows of the served rule: as training records them, the label windows ending at C
and one window before (``train.total_error_record``)."""


def validation_ends(end: pd.Timestamp, first: pd.Timestamp, holdout_days: int, step_days: int = 30,
                    min_history_days: int | None = None, limit: int = BIAS_WINDOWS) -> list[pd.Timestamp]:
    """Calibration ends of the validation windows known at ``end``: their holdout of ``holdout_days``
    ends on or before ``end`` (C - holdout, C - holdout - step, ...), each with at least
    ``min_history_days`` (default: the holdout length) of history; the newest ``limit``."""
    history = int(holdout_days if min_history_days is None else min_history_days)
    out, e = [], pd.Timestamp(end) - pd.Timedelta(days=int(holdout_days))
    while e - first >= pd.Timedelta(days=history) and len(out) < limit:
        out.append(e)
        e -= pd.Timedelta(days=int(step_days))
    return out


def _nearest_pareto_start(cache: dict, end: pd.Timestamp) -> dict | None:
    """Pareto/NBD parameters of the fitted window whose end is nearest ``end`` (None: none yet)."""
    fitted = [(abs(other - end), btyd.pareto_params(entry[1])) for other, entry in cache.items()
              if entry[1] is not None]
    starts = [(gap, params) for gap, params in fitted if params]
    return min(starts, key=lambda pair: pair[0])[1] if starts else None


def _window_fit(transactions: pd.DataFrame, end: pd.Timestamp, holdout_days: int, model_choice: str, cache: dict):
    """(summary, model or None, predicted total, actual total, why not evaluated) of one window,
    cached by its end (a validation window is the same fit as an earlier calibration window)."""
    if end in cache:
        return cache[end]
    summary = btyd.summarize(transactions, end, end + pd.Timedelta(days=int(holdout_days)))
    actual = float(summary["holdout_spend"].sum())
    if summary.empty or summary["frequency"].sum() == 0:
        cache[end] = (summary, None, None, actual, "no repeat purchases before the calibration end")
        return cache[end]
    # the windows are a month apart, so a Pareto/NBD fit starts from the nearest window's optimum
    # (``btyd._pareto_fit``) rather than from the two fixed starts: every window is refitted, and a
    # start near the optimum needs fewer likelihood evaluations
    start = _nearest_pareto_start(cache, end)
    try:
        model = (btyd.fit_auto(summary, pareto_start=start) if model_choice == AUTO
                 else btyd.fit_btyd(summary, model_choice, pareto_start=start))
    except btyd.FIT_ERRORS as error:
        cache[end] = (summary, None, None, actual, f"BTYD fit failed: {error}")
        return cache[end]
    predicted = float(model.score(summary, int(holdout_days) / btyd.DAYS_PER_WEEK)["expected_spend"].sum())
    cache[end] = (summary, model, predicted, actual, None)
    return cache[end]


def rolling_total_coverage(transactions: pd.DataFrame, calibration_ends: list, holdout_days: int,
                           model_choice: str = AUTO, replicates: int = COVERAGE_REPLICATES, seed: int = 0,
                           step_days: int = 30, bias_windows: int = BIAS_WINDOWS) -> dict:
    """Coverage of the BTYD's 80 % store-total interval over rolling windows, and a bias term.

    For each calibration end C: fit the BTYD family (``model_choice``) on the customers known at C,
    draw the store total over (C, C + holdout] (customer draws x parameter-bootstrap factors, as in
    ``interval_metrics``) and check whether the actual total falls inside the P10-P90. One window
    cannot tell a noisy miss from a biased model; several can: misses mostly on one side with a
    mean total error larger than the interval's half width are misfit *bias*, not noise.

    Bias term (point in time): up to ``bias_windows`` *validation windows* known at C
    (``validation_ends``: the same BTYD fitted at C - holdout, C - holdout - step, ..., each holdout
    ending by C) give observed total errors e = log(actual / predicted). Each draw of window C's
    total is multiplied by exp(e) for one of those errors drawn at random (``adjusted_p10`` /
    ``_p90``): the interval is shifted *and* widened by the validation total-error distribution,
    as a conformal interval is. ``symmetric_p10`` / ``_p90`` use exp(+-|e|) instead (widening
    only), for stores whose errors change sign with the season. Only data up to C is used; it needs
    two validation windows. Every window's row says whether it was evaluated and why not.

    ``served_total_*``: the rule scores/customer_clv serves (``total_interval.widen``), with the
    errors ml/clv_model would have recorded at C: the BTYD's on the label windows ending at C and
    C - holdout (``SERVED_WINDOWS``); process-only, labelled, where there is none.
    """
    rows, rng, cache = [], np.random.default_rng(seed), {}
    dates = transactions["order_date"]
    first = dates.min().normalize() if len(dates) else None
    for end in sorted(pd.Timestamp(e) for e in calibration_ends):
        holdout_end = end + pd.Timedelta(days=int(holdout_days))
        row = {"calibration_end": end.date().isoformat(), "holdout_end": holdout_end.date().isoformat()}
        summary, model, predicted, actual, reason = _window_fit(transactions, end, holdout_days, model_choice, cache)
        if model is None:
            rows.append({**row, "evaluated": False, "reason": reason})
            continue
        weeks = int(holdout_days) / btyd.DAYS_PER_WEEK
        draws = model.sample_spend(summary, weeks, INTERVAL_DRAWS, seed=seed)
        boot = btyd.parameter_bootstrap(model, summary, weeks, replicates, seed=seed) if replicates else {"factors": []}
        totals = total_draws(draws, np.ones(len(summary)), boot["factors"], seed=seed)
        low, high = (float(v) for v in np.quantile(totals, INTERVAL_LEVEL))
        row.update(evaluated=True, btyd_model=model.model, customers=int(len(summary)), predicted_total=predicted,
                   actual_total=actual, total_p10=low, total_p90=high, covered=bool(low <= actual <= high),
                   side="inside" if low <= actual <= high else ("above" if actual > high else "below"),
                   total_error=predicted / actual - 1.0 if actual > 0 else None)
        past = []
        for v_end in validation_ends(end, first, holdout_days, step_days, limit=bias_windows):
            _, v_model, v_predicted, v_actual, _ = _window_fit(transactions, v_end, holdout_days, model_choice, cache)
            if v_model is not None and v_predicted and v_predicted > 0 and v_actual > 0:
                past.append(float(np.log(v_actual / v_predicted)))
        # the served rule (total_interval.widen), as ml/clv_model records it at C: the BTYD's errors on
        # the label windows ending at C and C - holdout (features at C - holdout, C - 2 holdout)
        served = []
        for v_end in validation_ends(end, first, holdout_days, int(holdout_days), limit=SERVED_WINDOWS):
            _, v_model, v_predicted, v_actual, _ = _window_fit(transactions, v_end, holdout_days, model_choice, cache)
            if v_model is not None and v_predicted and v_predicted > 0 and v_actual > 0:
                served.append(float(np.log(v_actual / v_predicted)))
        c_low, c_high = customer_intervals(draws)
        row.update(served_total(actual, c_low, c_high, (served, None), predicted, 1.0))
        row["served_windows"] = len(served)
        if len(past) >= 2:
            errors = np.asarray(past)[rng.integers(0, len(past), len(totals))]
            adjusted = totals * np.exp(errors)
            symmetric = totals * np.exp(np.abs(errors) * rng.choice((-1.0, 1.0), len(totals)))
            a_low, a_high = (float(v) for v in np.quantile(adjusted, INTERVAL_LEVEL))
            s_low, s_high = (float(v) for v in np.quantile(symmetric, INTERVAL_LEVEL))
            row.update(bias_windows=len(past), bias_log_errors=past, adjusted_p10=a_low, adjusted_p90=a_high,
                       adjusted_covered=bool(a_low <= actual <= a_high), symmetric_p10=s_low, symmetric_p90=s_high,
                       symmetric_covered=bool(s_low <= actual <= s_high))
        rows.append(row)
    return {"holdout_days": int(holdout_days), "level": INTERVAL_LEVEL[1] - INTERVAL_LEVEL[0], "windows": rows,
            "bias_term": ("earlier validation windows known at each calibration end (holdout ending by it, "
                          f"{int(step_days)}-day steps, up to {int(bias_windows)}): total draws x exp(log error) "
                          "of one of them at random (shift and widen); symmetric = exp(+-|log error|)"),
            **coverage_summary(rows)}


def coverage_summary(rows: list[dict]) -> dict:
    """Coverage over the evaluated windows, the side of the misses and the diagnosis (bias vs noise).

    Bias: at least two misses, two thirds or more of them on one side, and a mean |total error|
    above the mean relative half width of the intervals (the errors are larger than the interval
    claims and point one way). Otherwise the misses are what an 80 % interval's noise allows.
    """
    done = [r for r in rows if r.get("evaluated")]
    if not done:
        return {"evaluated": 0, "coverage": None, "diagnosis": "no window could be evaluated"}
    above = sum(r["side"] == "above" for r in done)
    below = sum(r["side"] == "below" for r in done)
    errors = [r["total_error"] for r in done if r["total_error"] is not None]
    half = [(r["total_p90"] - r["total_p10"]) / 2.0 / r["predicted_total"] for r in done if r["predicted_total"] > 0]
    misses = above + below
    mean_abs_error = float(np.mean(np.abs(errors))) if errors else None
    mean_half_width = float(np.mean(half)) if half else None
    biased = (misses >= 2 and max(above, below) >= 2 * misses / 3 and mean_abs_error is not None
              and mean_half_width is not None and mean_abs_error > mean_half_width)
    adjusted = [r for r in done if "adjusted_covered" in r]
    symmetric = [r for r in done if "symmetric_covered" in r]
    served = [r for r in done if "served_total_covered" in r]
    widened = [r for r in served if r.get("served_windows")]
    return {
        "evaluated": len(done),
        "coverage": float(np.mean([r["covered"] for r in done])),
        "misses_above": above,
        "misses_below": below,
        "mean_total_error": float(np.mean(errors)) if errors else None,
        "mean_abs_total_error": mean_abs_error,
        "mean_relative_half_width": mean_half_width,
        "diagnosis": ("bias: the misses fall mostly on one side and the total errors exceed the interval's "
                      "half width" if biased else "noise: the misses are within what the interval allows"),
        "adjusted_evaluated": len(adjusted),
        "adjusted_coverage": float(np.mean([r["adjusted_covered"] for r in adjusted])) if adjusted else None,
        "symmetric_adjusted_coverage": (float(np.mean([r["symmetric_covered"] for r in symmetric]))
                                        if symmetric else None),
        # the served rule (total_interval.widen; process-only where no validation window existed)
        "served_evaluated": len(served),
        "served_with_errors": len(widened),
        "served_coverage": float(np.mean([r["served_total_covered"] for r in served])) if served else None,
        "served_process_coverage": (float(np.mean([r["served_total_process_covered"] for r in served]))
                                    if served else None),
        "served_mean_relative_width": (float(np.mean([r["served_total_relative_width"] for r in served
                                                      if r["served_total_relative_width"] is not None]))
                                       if served else None),
    }


@dataclass
class BTYDBacktest:
    """Everything a backtest run produced: the JSON-ready ``result`` and the frames behind it."""

    result: dict
    frame: pd.DataFrame
    summary: pd.DataFrame
    models: dict[str, btyd.BTYDModel]
    transactions: pd.DataFrame
    chosen: btyd.BTYDModel | None = None
    """The BTYD behind the ``btyd`` column and the stages (``btyd_selection``)."""

    def restage(self, p_alive: np.ndarray, model_columns: list[str], p_purchase: np.ndarray | None = None) -> dict:
        """``per_stage`` again with production's lifecycle rule on ``p_alive`` (aligned with
        ``summary``): the served p_alive where the next-purchase model lowers the BTYD's
        (``clv.reconcile_alive``), and the served trained model's ``p_purchase`` (P(90 d)); the
        frame's ``stage`` column is replaced."""
        self.frame["stage"] = lifecycle.stages_from_summary(self.summary, p_alive=p_alive,
                                                            p_purchase=p_purchase).to_numpy()
        return evaluate_frame(self.frame, model_columns)["per_stage"]


def btyd_backtest(
    dataset: str | os.PathLike,
    calibration_end=None,
    holdout_end=None,
    model_choice: str = AUTO,
    extra_predictions: dict[str, pd.Series] | None = None,
    bootstrap_replicates: int = PARAMETER_REPLICATES,
    mean_columns: dict[str, str] | None = None,
    served_errors: dict[str, tuple[list[float], str | None]] | None = None,
    label_days: int | None = None,
    mean_series: dict[str, pd.Series] | None = None,
) -> BTYDBacktest:
    """Run the BTYD backtest and keep the per-customer frame for further models.

    Both BG/NBD and Pareto/NBD are fitted and reported; ``model_choice`` ("bgnbd",
    "pareto_nbd" or "auto" = higher log-likelihood, both having four parameters) picks the one
    behind the ``btyd`` prediction. ``extra_predictions`` maps a model name to predicted holdout
    spend indexed by customer_id; customers missing from a series count as predicted 0.
    ``mean_columns`` maps a model column to the column its intervals are centred on (its mean), which
    is a model column or one of ``mean_series`` (means that are not evaluated as models, indexed the
    same way).
    ``served_errors`` maps a model column to the total errors its method recorded at training
    (``clv.ml_backtest``), ``label_days`` their window: those models' intervals report the served
    store-total interval too (``interval_metrics``).
    """
    started = time.perf_counter()
    loaded = load_dataset(dataset)
    calibration_end = pd.Timestamp(calibration_end) if calibration_end is not None else loaded.calibration_end
    holdout_end = pd.Timestamp(holdout_end) if holdout_end is not None else loaded.holdout_end
    if calibration_end is None or holdout_end is None:
        raise ValueError(f"dataset {loaded.name!r} has no default window: pass calibration_end and holdout_end")
    if holdout_end <= calibration_end:
        raise ValueError("holdout_end must be after calibration_end")

    summary = btyd.summarize(loaded.transactions, calibration_end, holdout_end)
    horizon = btyd.holdout_weeks(calibration_end, holdout_end, loaded.transactions)

    if model_choice not in (*btyd.TRANSACTION_MODELS, AUTO):
        raise ValueError(f"model_choice must be one of {btyd.TRANSACTION_MODELS + (AUTO,)}, got {model_choice!r}")
    timings = {}
    attempts: dict[str, btyd.BTYDModel | Exception] = {}
    for name in btyd.TRANSACTION_MODELS:
        t0 = time.perf_counter()
        try:
            attempts[name] = btyd.fit_btyd(summary, name)
        except btyd.FIT_ERRORS as error:
            attempts[name] = error  # reported; a family that cannot be fitted must not stop the backtest
        timings[name] = time.perf_counter() - t0
    fitted = {name: m for name, m in attempts.items() if not isinstance(m, Exception)}
    if model_choice == AUTO:
        chosen = btyd.fit_auto(summary, fits=attempts)
    elif model_choice in fitted:
        chosen = fitted[model_choice]
    else:
        raise ValueError(f"{model_choice} could not be fitted: {attempts[model_choice]}")
    model_choice = chosen.model

    expected = {name: model.expected_purchases(summary, horizon) for name, model in fitted.items()}
    scores = chosen.score(summary, horizon)
    frame = summary.assign(
        stage=lifecycle.stages_from_summary(summary, p_alive=scores["p_alive"].to_numpy()),
        actual=summary["holdout_spend"],
        **{NAIVE: naive_prediction(summary, horizon), BTYD: scores["expected_spend"]},
        btyd_expected_purchases=scores["expected_purchases"],
        btyd_expected_aov=scores["expected_aov"],
        btyd_p_alive=scores["p_alive"],
    )
    model_columns = [NAIVE, BTYD]
    for name, series in (extra_predictions or {}).items():
        frame[name] = series.reindex(frame.index).fillna(0.0).astype(float)
        model_columns.append(name)
    for name, series in (mean_series or {}).items():
        frame[name] = series.reindex(frame.index).fillna(0.0).astype(float)

    draws = chosen.sample_spend(summary, horizon, INTERVAL_DRAWS)
    holdout_days = (holdout_end - calibration_end).days  # the served horizon of the backtest
    t0 = time.perf_counter()
    bootstrap = btyd.parameter_bootstrap(chosen, summary, horizon, bootstrap_replicates) if bootstrap_replicates else {
        "replicates": 0, "factors": np.empty(0), "reason": "parameter bootstrap off (0 replicates)"}
    factors = bootstrap["factors"]
    means = {name: (mean_columns or {}).get(name, name) for name in model_columns}
    intervals = {
        name: interval_metrics(frame["actual"].to_numpy(dtype=float), draws,
                               _ratio(frame[means[name]].to_numpy(dtype=float), scores["expected_spend"].to_numpy()),
                               factors,
                               point=frame[name].to_numpy(dtype=float) if means[name] != name else None,
                               served=(served_errors or {}).get(name),
                               mean_total=float(frame[means[name]].sum()),
                               horizon_ratio=(holdout_days / label_days) if label_days else 1.0)
        for name in model_columns if name != NAIVE
    }
    parameter_section = {
        **{k: v for k, v in bootstrap.items() if k != "factors"},
        "factor_p10": float(np.quantile(factors, 0.1)) if len(factors) else None,
        "factor_p90": float(np.quantile(factors, 0.9)) if len(factors) else None,
        "seconds": time.perf_counter() - t0,
    }

    def transaction_section(name: str) -> dict:
        model = fitted.get(name)
        if model is None:
            return {"params": None, "error": str(attempts[name])}
        return {
            "params": {k: float(v) for k, v in model.transactions.params_.items()},
            "log_likelihood": model.log_likelihood,
            "predicted_holdout_purchases": float(expected[name].sum()),
            "fit_seconds": timings[name],
        }

    spend = chosen.spend
    result = {
        "dataset": loaded.name,
        "customers": int(len(summary)),
        "window": {
            "calibration_end": calibration_end.date().isoformat(),
            "holdout_end": holdout_end.date().isoformat(),
            "holdout_weeks": horizon,
        },
        "btyd_model": model_choice,
        "btyd_selection": {"chosen": chosen.model, "penalizer": chosen.penalizer,
                           "reason": chosen.reason or f"{chosen.model} requested", "candidates": list(chosen.selection)},
        "calibration_repeat_transactions": int(summary["frequency"].sum()),
        "holdout_transactions": int(summary["holdout_purchases"].sum()),
        btyd.BGNBD: transaction_section(btyd.BGNBD),
        btyd.PARETO_NBD: transaction_section(btyd.PARETO_NBD),
        btyd.MBGNBD: transaction_section(btyd.MBGNBD),
        "gamma_gamma": {
            "params": chosen.params()["spend_params"],
            "population_mean": spend.population_mean,
            "customers_fitted": spend.n_fitted,
            "excluded_nonpositive_monetary": spend.n_excluded_nonpositive,
        },
        **evaluate_frame(frame, model_columns),
        "intervals": intervals,
        "parameter_bootstrap": parameter_section,
        "purchases_by_x": btyd.purchases_by_frequency(summary, expected),
        "cumulative": btyd.cumulative_repeat_transactions(
            loaded.transactions,
            {name: model.transactions for name, model in fitted.items()},
            calibration_end,
            holdout_end,
        ),
    }
    result["runtime_seconds"] = time.perf_counter() - started
    return BTYDBacktest(json_safe(result), frame, summary, fitted, loaded.transactions, chosen)


def run_btyd_backtest(*args, **kwargs) -> dict:
    """JSON-ready result of ``btyd_backtest``, which takes the same arguments (see there).

    The arguments pass through unchanged so that the two signatures cannot drift apart.
    """
    return btyd_backtest(*args, **kwargs).result


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def _svg_lines(title: str, x: list[float], series: dict[str, list[float]], marker_x: float | None) -> str:
    """A line chart as inline SVG; ``marker_x`` draws a dashed vertical line (calibration end)."""
    width, height, left, right, top, bottom = 720, 340, 60, 150, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = max((max(v) for v in series.values() if v), default=1.0) or 1.0
    x_min, x_max = min(x), max(x)
    x_span = (x_max - x_min) or 1.0

    def sx(v: float) -> float:
        return left + (v - x_min) / x_span * plot_w

    def sy(v: float) -> float:
        return top + plot_h - v / y_max * plot_h

    parts = [*svg_chart_start(width, height, left, title),
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
             *svg_value_axis(left, top, plot_w, plot_h, y_max)]
    for value in np.linspace(x_min, x_max, 7):
        parts.append(
            f'<text x="{sx(value):.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">{value:.0f}</text>'
        )
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">week</text>')
    if marker_x is not None:
        parts.append(f'<line x1="{sx(marker_x):.1f}" x2="{sx(marker_x):.1f}" y1="{top}" y2="{top + plot_h}" '
                     'stroke="#555" stroke-dasharray="4 3"/>')
    for i, (name, values) in enumerate(series.items()):
        color = _PALETTE[i % len(_PALETTE)]
        points = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x, values))
        dash = "" if i == 0 else ' stroke-dasharray="6 3"'
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{points}"/>')
        y_legend = top + 14 + 18 * i
        parts.append(f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 30}" y1="{y_legend}" y2="{y_legend}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + plot_w + 34}" y="{y_legend + 4}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_deciles(title: str, rows: list[dict]) -> str:
    """Grouped bars of mean predicted vs mean actual per prediction decile, as inline SVG."""
    width, height, left, top, bottom = 720, 300, 60, 30, 40
    plot_w, plot_h = width - left - 130, height - top - bottom
    y_max = max([max(r["mean_predicted"] or 0.0, r["mean_actual"] or 0.0) for r in rows] + [1e-9])
    slot = plot_w / max(len(rows), 1)
    bar = slot * 0.38
    parts = [*svg_chart_start(width, height, left, title),
             f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>',
             *svg_value_axis(left, top, plot_w, plot_h, y_max)]
    for j, row in enumerate(rows):
        x0 = left + j * slot + slot * 0.12
        for k, (key, color) in enumerate((("mean_predicted", _PALETTE[0]), ("mean_actual", _PALETTE[1]))):
            value = row[key] or 0.0
            h = value / y_max * plot_h
            parts.append(f'<rect x="{x0 + k * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>decile {row["decile"]} {key}: {value:,.2f}</title></rect>')
        parts.append(f'<text x="{x0 + bar:.1f}" y="{top + plot_h + 16}" font-size="10" '
                     f'text-anchor="middle">{row["decile"]}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 'decile of predicted spend (1 = highest)</text>')
    for k, (label, color) in enumerate((("mean predicted", _PALETTE[0]), ("mean actual", _PALETTE[1]))):
        y = top + 14 + 18 * k
        parts.append(f'<rect x="{left + plot_w + 12}" y="{y - 8}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{left + plot_w + 30}" y="{y + 2}" font-size="11">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report_html(result: dict, path: str | os.PathLike) -> Path:
    """Write a self-contained HTML report (inline SVG charts, no external assets) and return its path."""
    holdout = result["holdout"]
    models = list(holdout["models"])
    metric_rows = [
        [name, m["mae"], m["rmse"], m["spearman"], m["normalized_gini"], m["predicted_total"]]
        for name, m in holdout["models"].items()
    ]
    by_x = result["purchases_by_x"]
    model_names = [k for k in by_x[0] if k not in ("x", "customers")] if by_x else []
    by_x_rows = [[r["x"], r["customers"], *[r[k] for k in model_names]] for r in by_x]
    params_rows = [
        [name, ", ".join(f"{k}={v:.4g}" for k, v in (result[name]["params"] or {}).items()),
         result[name].get("log_likelihood")]
        for name in (btyd.BGNBD, btyd.PARETO_NBD, "gamma_gamma") if name in result
    ]
    cumulative = result["cumulative"]
    cumulative_series = {"actual": cumulative["actual"], **cumulative["models"]}
    totals = cumulative["totals"]
    window = result.get("window", {})

    sections = [
        f"<h1>CLV backtest: {html.escape(str(result['dataset']))}</h1>",
        f"<p>{result['customers']:,} customers; calibration to {html.escape(str(window.get('calibration_end')))}, "
        f"holdout to {html.escape(str(window.get('holdout_end')))} ({_fmt(window.get('holdout_weeks'), 1)} weeks). "
        f"BTYD predictions use <b>{html.escape(str(result.get('btyd_model')))}</b> with Gamma-Gamma spend.</p>",
        "<h2>Holdout spend per customer</h2>",
        f"<p>Actual total: {_fmt(holdout['actual_total'], 2)}</p>",
        _table(["model", "MAE", "RMSE", "Spearman", "normalized Gini", "predicted total"], metric_rows),
        "<h2>Deciles</h2>",
        *[
            _svg_deciles(f"{name}: mean predicted vs actual holdout spend", rows)
            for name, rows in result["deciles"].items()
        ],
        "<h2>Cumulative repeat transactions</h2>",
        f"<p>Week {totals['week']}: actual {totals['actual']:,}; "
        + "; ".join(f"{html.escape(k)} {v:,.0f}" for k, v in totals.items() if k not in ("week", "actual"))
        + ". The dashed vertical line is the calibration end.</p>",
        _svg_lines("Cumulative repeat transactions, actual vs forecast", cumulative["weeks"], cumulative_series,
                   cumulative.get("calibration_weeks")),
        "<h2>Mean holdout purchases by calibration repeat purchases (x)</h2>",
        _table(["x", "customers", *model_names], by_x_rows),
        "<h2>Model parameters</h2>",
        _table(["model", "parameters (weeks)", "log-likelihood"], params_rows),
        "<h2>Errors by lifecycle stage</h2>",
        _table(
            ["stage", "customers", "actual mean", *[f"{m} MAE" for m in models], *[f"{m} RMSE" for m in models]],
            [
                [stage, block["customers"], block["actual_mean"], *[block[m]["mae"] for m in models],
                 *[block[m]["rmse"] for m in models]]
                for stage, block in result["per_stage"].items()
            ],
        ),
    ]
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}svg{display:block;margin:0.5em 0 1em}")
    title = f"CLV backtest {html.escape(str(result['dataset']))}"
    document = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out
