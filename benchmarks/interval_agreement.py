"""The two store-level 80 % intervals for the existing customers' revenue, side by side, at rolling cutoffs.

``scores/customer_clv`` serves the store total of predicted CLV with ``total_interval.widen`` (the
process interval widened by t(0.9, n) x rms of the BTYD's total log errors on the two 91-day label
windows ending at the cutoff x sqrt(H / 91)); ``marts/revenue_forecast`` serves the existing
customers' revenue per period and over 30/90/365 days with ``forecast.revenue`` (compound-Poisson
noise plus a systematic term scaled by one rehearsal six months back, t(0.9, 1) x its scale since
``REHEARSAL_T_FACTOR``; a run on older code measures the known-sd rule). Both are intervals for the
revenue of the customers known at the cutoff C over (C, C + H]; this measures how often each holds
the actual, undiscounted, for H = 3, 6 and 12 calendar months at every month-end cutoff that
leaves a whole horizon.

Per cutoff (data up to C only):

* ``clv``: the BTYD (``fit_auto``, as ml/btyd_scores) expected spend of every known customer over
  H, its process interval from 200 draws per customer (``customer_intervals`` ->
  ``process_interval``), widened by the served BTYD's errors (windows ending at C and C - 91, each
  fitted at its feature cutoff; ``models.backtest._window_fit``); ``clv_hybrid`` the same with the
  hybrid's single level error (``method_errors(level_calibrated=True)``);
* ``forecast``: ``revenue.existing_customer_forecast`` with the served BTYD (``fit_auto``, the one
  marts/revenue_forecast reads; BG/NBD before 5 December 2026), seasonal index and BG/NBD rehearsal
  of ``forecast_revenue`` (as ``clv-platform backtest --forecast-only``), over one period (C, C + H];
* the actual revenue of the customers whose first order is on or before C (``period_actuals``).

``python -m benchmarks.interval_agreement cdnow-sample demo --out /tmp/agree.json``; each row keeps
the centres, the interval bounds and the log errors, so other width rules can be scored offline.
Rows of overlapping horizons are not independent: a coverage share over them is a description of
the data sets, not a binomial sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

import numpy as np
import pandas as pd

from clv_platform.forecast import backtest as fbt
from clv_platform.forecast import revenue
from clv_platform.models import btyd, total_interval
from clv_platform.models import backtest as mbt

LABEL_DAYS = 91
"""A quarter: the backtest's label window until 6 December 2026 (its own ``[backtest]`` section,
since replaced by production's rule, ``clv.supported_label_window``; 89 days on CDNOW)."""
SERVED_LABEL_DAYS = 180
"""The packaged clv.toml's label window (``[horizon] label_horizon_days``): ``clv180_*``."""
LABEL_WINDOWS = (LABEL_DAYS, SERVED_LABEL_DAYS)
HORIZON_MONTHS = (3, 6, 12)
DRAWS = 200


def month_end_cutoffs(tx: pd.DataFrame, min_months: int = 9, horizon_months: int = 3, step_months: int = 1) -> list[date]:
    first = pd.Timestamp(tx["order_date"].min()).normalize()
    last = pd.Timestamp(tx["order_date"].max()).normalize()
    c = first + pd.offsets.MonthEnd(min_months)
    out = []
    while c + pd.offsets.MonthEnd(horizon_months) <= last:
        out.append(c.date())
        c = c + pd.offsets.MonthEnd(step_months)
    return out


def horizon_period(cutoff: date, months: int) -> revenue.Period:
    c = pd.Timestamp(cutoff)
    return revenue.Period(f"{months}m", "total", (c + pd.Timedelta(days=1)).date(), (c + pd.offsets.MonthEnd(months)).date())


def evaluate_cutoff(tx: pd.DataFrame, cutoff: date, horizons: tuple[int, ...], cache: dict) -> list[dict]:
    c = pd.Timestamp(cutoff)
    last = pd.Timestamp(tx["order_date"].max()).normalize()
    periods = [horizon_period(cutoff, m) for m in horizons if pd.Timestamp(horizon_period(cutoff, m).end) <= last]
    if not periods:
        return []
    history = tx[tx["order_date"] <= c]
    summary = btyd.summarize(history, c)
    # the BTYD ml/btyd_scores serves at C (fit_auto): the centre of the CLV total and the purchase
    # model of the revenue forecast, whose rehearsal refits BG/NBD as the asset's does
    auto = btyd.fit_auto(summary)
    rehearsal = revenue.rehearse(history, cutoff, btyd.BGNBD)
    season = revenue.seasonal_index(history, auto, cutoff)
    existing = revenue.existing_customer_forecast(summary, auto, cutoff, periods, season, None, 365,
                                                  rehearsal.existing_scale).set_index("period")
    actual = revenue.period_actuals(tx, periods, cutoff).set_index("period")
    # the CLV total as scores/customer_clv serves it (undiscounted): served errors
    first = pd.Timestamp(tx["order_date"].min()).normalize()
    errors = {h: served_errors(tx, c, first, h, cache) for h in LABEL_WINDOWS}
    rows = []
    for p in periods:
        days = (pd.Timestamp(p.end) - c).days
        weeks = days / btyd.DAYS_PER_WEEK
        center = float(auto.score(summary, weeks)["expected_spend"].sum())
        draws = auto.sample_spend(summary, weeks, DRAWS, seed=0)
        low, high = mbt.customer_intervals(draws)
        p_low, p_high = total_interval.process_interval(center, total_interval.customer_variance(low, high))
        served = total_interval.widen(center, p_low, p_high, errors[LABEL_DAYS], days / LABEL_DAYS)
        hybrid = total_interval.widen(center, p_low, p_high, total_interval.method_errors(errors[LABEL_DAYS], True),
                                      days / LABEL_DAYS)
        long = total_interval.widen(center, p_low, p_high, errors[SERVED_LABEL_DAYS], days / SERVED_LABEL_DAYS)
        f = existing.loc[p.label]
        a = float(actual.loc[p.label, "actual_existing_revenue"])
        systematic = revenue._relative_sd(season.relative_sd, rehearsal.existing_scale, p, cutoff)
        rows.append({
            "cutoff": str(cutoff), "horizon_months": int(p.label[:-1]), "days": days, "actual": a,
            "customers": int(len(summary)), "btyd_family": auto.model,
            "clv_center": center, "clv_p10": served["p10"], "clv_p90": served["p90"],
            "clv_process_p10": p_low, "clv_process_p90": p_high, "clv_log_errors": errors[LABEL_DAYS],
            "clv_half_width": served["half_width"], "clv_rule": served["rule"],
            "clv_covered": bool(served["p10"] <= a <= served["p90"]),
            "clv_hybrid_p10": hybrid["p10"], "clv_hybrid_p90": hybrid["p90"],
            "clv_hybrid_covered": bool(hybrid["p10"] <= a <= hybrid["p90"]),
            "clv180_p10": long["p10"], "clv180_p90": long["p90"], "clv180_log_errors": errors[SERVED_LABEL_DAYS],
            "clv180_windows": long["windows"], "clv180_covered": bool(long["p10"] <= a <= long["p90"]),
            "forecast_center": float(f["revenue"]), "forecast_p10": float(f["revenue_low"]),
            "forecast_p90": float(f["revenue_high"]), "forecast_sd": float(f["revenue_sd"]),
            "forecast_systematic_relative_sd": systematic, "rehearsal_scale": rehearsal.existing_scale,
            "rehearsal_cutoff": str(rehearsal.cutoff), "season_relative_sd": season.relative_sd,
            "forecast_covered": bool(f["revenue_low"] <= a <= f["revenue_high"]),
            "clv_log_error": float(np.log(a / center)) if a > 0 and center > 0 else None,
            "forecast_log_error": float(np.log(a / f["revenue"])) if a > 0 and f["revenue"] > 0 else None,
        })
    return rows


def served_errors(tx: pd.DataFrame, c: pd.Timestamp, first: pd.Timestamp, h: int, cache: dict) -> list[float]:
    """The BTYD's total log errors on the label windows (C - h, C] and (C - 2h, C - h], each fitted at
    its feature cutoff, as ``train.total_error_record`` records them (a window needs 91 days of history)."""
    out = []
    for v_end in mbt.validation_ends(c, first, h, h, min_history_days=LABEL_DAYS, limit=mbt.SERVED_WINDOWS):
        _, v_model, v_pred, v_act, _ = mbt._window_fit(tx, v_end, h, mbt.AUTO, cache.setdefault(h, {}))
        if v_model is not None and v_pred and v_pred > 0 and v_act > 0:
            out.append(float(np.log(v_act / v_pred)))
    return out


def run(dataset: str, horizons: tuple[int, ...] = HORIZON_MONTHS, min_months: int = 9,
        cutoffs: list[date] | None = None, step_months: int = 1) -> list[dict]:
    tx = fbt.load_forecast_dataset(dataset).transactions
    tx = tx.assign(order_date=pd.to_datetime(tx["order_date"]).dt.normalize())
    cache: dict = {}
    out = []
    for cutoff in cutoffs or month_end_cutoffs(tx, min_months, min(horizons), step_months):
        t0 = time.perf_counter()
        rows = evaluate_cutoff(tx, cutoff, horizons, cache)
        for r in rows:
            r["dataset"] = dataset
        out += rows
        print(f"{dataset} {cutoff}: {len(rows)} horizons in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
    return out


def table(rows: list[dict]) -> pd.DataFrame:
    """Per data set and horizon: cutoffs, mean relative width and coverage of each interval."""
    frame = pd.DataFrame(rows)
    frame["clv_width"] = (frame["clv_p90"] - frame["clv_p10"]) / frame["clv_center"]
    frame["clv_hybrid_width"] = (frame["clv_hybrid_p90"] - frame["clv_hybrid_p10"]) / frame["clv_center"]
    frame["clv180_width"] = (frame["clv180_p90"] - frame["clv180_p10"]) / frame["clv_center"]
    frame["forecast_width"] = (frame["forecast_p90"] - frame["forecast_p10"]) / frame["forecast_center"]
    return frame.groupby(["dataset", "horizon_months"]).agg(
        cutoffs=("cutoff", "size"), first=("cutoff", "min"), last=("cutoff", "max"),
        clv_width=("clv_width", "mean"), clv_coverage=("clv_covered", "mean"),
        clv_hybrid_width=("clv_hybrid_width", "mean"), clv_hybrid_coverage=("clv_hybrid_covered", "mean"),
        clv180_width=("clv180_width", "mean"), clv180_coverage=("clv180_covered", "mean"),
        forecast_width=("forecast_width", "mean"), forecast_coverage=("forecast_covered", "mean"),
        clv_rms_error=("clv_log_error", lambda v: float(np.sqrt(np.mean(np.square(v))))),
        forecast_rms_error=("forecast_log_error", lambda v: float(np.sqrt(np.mean(np.square(v))))),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--min-months", type=int, default=9, help="first cutoff: this many month ends after the first order")
    parser.add_argument("--step-months", type=int, default=1, help="months between cutoffs")
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets:
        rows += run(name, min_months=args.min_months, step_months=args.step_months)
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)
    print(table(rows).to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
