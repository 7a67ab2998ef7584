"""The store-total CLV interval: process noise widened by the forecast method's own total error.

The per-customer P10/P90 describe purchase and spend noise given the fitted model; summed over
thousands of customers that noise averages out, and the store total's interval is a few per cent
wide. What actually moves the total is the model being wrong for the store (misspecification,
drift): the BTYD under-forecast CDNOW full's 39-week holdout by 22 % with a process interval of
+-3 %. So the served interval adds the *systematic* error the method showed, point in time, on
label windows that end by the cutoff (``ml/clv_model`` records them at training,
``window_errors``):

* errors e = log(actual / predicted total) of windows the forecast was not fitted on. The BTYD is
  fitted at each window's feature cutoff, so its errors are out of sample as they are. The hybrid's
  level is calibrated on the newest window (its own error there is ~0 by construction), so its
  method error is how far that level misses on another window: e_j - e_newest of the BTYD's errors
  (``method_errors``);
* s = root mean square of those errors (no shift: the sign of a store's error changes with the
  season and the holdout, and the revenue forecast's systematic term is symmetric too);
* the 80 % quantile of the error is t_{0.9, n} * s, Student's t with n = the number of errors
  (s is estimated from few windows; t_{0.9,1} = 3.08, t_{0.9,2} = 1.89, normal 1.28);
* it grows with the square root of the horizon over the window length, as the revenue forecast's
  rehearsal error does (``forecast.revenue._relative_sd``): sqrt(H / h);
* added in quadrature to the process half widths in log space (variances add, as in
  ``forecast.revenue.existing_customer_forecast``), symmetric: total x exp(+-half).

With no usable window (a short history) the process interval is served as it was, labelled
``rule = "process only: ..."``. Chosen before looking at the new rule's coverage; the backtest
reports it next to the process-only interval (``backtest.interval_metrics``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

Z80 = 1.2815515655446004
"""Half-width of a two-sided 80 % normal interval in standard deviations (P10 .. P90)."""
LEVEL = 0.9
"""Upper quantile of the two-sided 80 % interval."""
PROCESS_ONLY = "process only"
SYMMETRIC = "symmetric t"


def process_interval(total: float, variance: float) -> tuple[float, float]:
    """Normal 80 % interval of a sum of independent customers: total +- 1.2816 sd (floored at 0)."""
    spread = Z80 * math.sqrt(max(float(variance or 0.0), 0.0))
    return max(float(total) - spread, 0.0), float(total) + spread


def customer_variance(p10: np.ndarray, p90: np.ndarray) -> float:
    """Sum of per-customer variances read off their P10/P90: sd ~ (P90 - P10) / 2.5631 (normal)."""
    sd = (np.asarray(p90, dtype=float) - np.asarray(p10, dtype=float)) / (2.0 * Z80)
    return float(np.sum(sd ** 2))


def window_errors(windows: list[tuple[str, pd.DataFrame]], predicted: str = "btyd_expected_spend",
                  actual: str = "label_spend") -> list[dict]:
    """One row per label window: its predicted and actual totals and e = log(actual / predicted);
    a window without a positive total on both sides has no error (``log_error`` None)."""
    rows = []
    for label_end, frame in windows:
        p = float(np.clip(np.nan_to_num(frame[predicted].to_numpy(dtype=float)), 0.0, None).sum()) if len(frame) else 0.0
        a = float(frame[actual].to_numpy(dtype=float).sum()) if len(frame) else 0.0
        rows.append({"label_end": str(label_end), "customers": int(len(frame)), "predicted_total": p,
                     "actual_total": a, "log_error": math.log(a / p) if p > 0 and a > 0 else None})
    return rows


def stretch_reason(windows: list[dict]) -> str | None:
    """Why the ``window_errors`` rows have no error when one holds a stretch without orders (marked
    ``stretch`` by ``train.total_error_record``), else None."""
    held = next((w["stretch"] for w in windows if w.get("stretch")), None)
    return f"the label windows hold {held}: their total errors measure that stretch, not the method" if held else None


def method_errors(log_errors: list[float], level_calibrated: bool) -> list[float]:
    """The served method's out-of-sample total errors from the BTYD's, newest first: the BTYD's
    own, or for a forecast whose level was fitted on the newest window (the hybrid) the error of
    that level on each older window, e_j - e_newest."""
    errors = [float(e) for e in log_errors if e is not None and math.isfinite(e)]
    if not level_calibrated:
        return errors
    return [e - errors[0] for e in errors[1:]] if len(errors) >= 2 else []


def error_half_width(errors: list[float], horizon_ratio: float = 1.0) -> dict:
    """The systematic term in log space: t_{0.9, n} x rms(errors) x sqrt(horizon_ratio)."""
    n = len(errors)
    if n == 0:
        return {"windows": 0, "rms_log_error": None, "t_quantile": None, "horizon_factor": None, "half_width": 0.0}
    rms = float(np.sqrt(np.mean(np.square(errors))))
    t = float(stats.t.ppf(LEVEL, n))
    factor = float(math.sqrt(max(horizon_ratio, 0.0)))
    return {"windows": n, "rms_log_error": rms, "t_quantile": t, "horizon_factor": factor,
            "half_width": t * rms * factor}


def widen(total: float, p10: float, p90: float, errors: list[float], horizon_ratio: float = 1.0,
          reason: str | None = None) -> dict:
    """The served store-total interval: the process interval (``p10``, ``p90`` around ``total``)
    with the systematic half width (``error_half_width``) added in quadrature in log space.

    No errors: the process interval itself, ``rule`` saying why (``reason``). Returns ``p10``,
    ``p90``, ``process_p10``, ``process_p90``, ``rule`` and the term's parts."""
    term = error_half_width(errors, horizon_ratio)
    base = {"process_p10": float(p10), "process_p90": float(p90), "log_errors": [float(e) for e in errors], **term}
    total = float(total)
    if term["windows"] == 0 or total <= 0:
        why = reason or ("no label window with a known total error before the cutoff" if total > 0 else "total is 0")
        return {"p10": float(p10), "p90": float(p90), "rule": f"{PROCESS_ONLY}: {why}", **base}
    b = term["half_width"]
    low = 0.0 if p10 <= 0 else total * math.exp(-math.hypot(math.log(total / p10), b))
    high = total * math.exp(math.hypot(math.log(max(p90, total) / total), b))
    rule = (f"{SYMMETRIC}: process interval widened by t(0.9, {term['windows']}) {term['t_quantile']:.3f} x rms log "
            f"total error {term['rms_log_error']:.4f} x sqrt(horizon / window) {term['horizon_factor']:.3f}")
    return {"p10": low, "p90": high, "rule": rule, **base}


def served_errors(total_error: dict | None) -> tuple[list[float], str | None]:
    """(method errors, why none) of a model's recorded ``total_error`` block (sidecar / serving)."""
    if not total_error:
        return [], "the model records no validation total errors (trained before they were recorded)"
    errors = list(total_error.get("method_log_errors") or [])
    return errors, (None if errors else total_error.get("reason") or "no usable validation window")
