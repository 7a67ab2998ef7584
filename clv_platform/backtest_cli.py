"""``clv-platform backtest``: naive vs BTYD vs XGBoost vs hybrid on CDNOW or a transactions CSV.

Every model is fitted on data up to the calibration end only (the ML training windows end at or
before it) and scored on the per-customer spend in (calibration end, holdout end]. ``--json``
prints one object: dataset, customers, the BG/NBD, Pareto/NBD and Gamma-Gamma parameters, holdout
metrics per model, per-stage errors and decile tables. ``--report`` writes the HTML report of
``models.backtest`` (decile and cumulative-transaction charts) plus the ML section.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clv_platform.transforms.order_gaps import UNOBSERVED_NOTE, closed_season_note

MODEL_ORDER = ("naive", "btyd", "xgboost", "hybrid")
EXTRA_MODELS = ("hybrid_mean", "btyd_point", "served")
"""Further backtest columns when present: the hybrid's conditional mean (``hybrid`` is its point
forecast under the point rule chosen on the validation window), the BTYD's own point forecast
under its rule (the fair MAE comparison) and the point forecast the platform serves for the store."""


def model_names(result: dict) -> list[str]:
    """The model columns of a result in report order."""
    present = result["holdout"]["models"]
    return [m for m in (*MODEL_ORDER, *EXTRA_MODELS) if m in present]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="cdnow-sample, cdnow-full, a file (customer_id,order_date,amount, or any export "
                        "`clv-platform files` reads), a store the "
                        "platform built (a .duckdb file, e.g. data/files.duckdb), or 'store': the one CLV_SOURCE "
                        "names")
    parser.add_argument("--calibration-end", help="last day of the calibration period (YYYY-MM-DD)")
    parser.add_argument("--holdout-end", help="last day of the holdout period (YYYY-MM-DD)")
    parser.add_argument("--config", help="clv.toml to use (default: the packaged one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--report", help="write an HTML report to this file")
    parser.add_argument("--skip-npd", action="store_true", help="leave out the next-purchase-date backtest")
    parser.add_argument("--coverage-windows", type=int, default=6,
                        help="rolling windows for the coverage of the BTYD store-total interval (0 = off)")
    parser.add_argument("--forecast", action="store_true",
                        help="also backtest the store revenue forecast (always on for the demo data sets)")
    parser.add_argument("--forecast-only", action="store_true", help="only the revenue forecast backtest")
    parser.add_argument("--forecast-cutoff", help="month end the revenue forecast is made at (default per data set)")


GAP_WARNING = f"a missing part of the file? {UNOBSERVED_NOTE[0].upper()}{UNOBSERVED_NOTE[1:]}"
"""What the backtest says after each stretch without orders (``transforms.order_gaps``), on stderr and
atop its report."""


def run_backtest(
    dataset: str, calibration_end=None, holdout_end=None, config_path=None, with_npd: bool = True,
    coverage_windows: int = 0,
) -> tuple[dict, dict]:
    """Run all four CLV models (and the next-purchase models); returns (result, ML summary)."""
    from clv_platform.models import backtest, clv, frames
    from clv_platform.models.datasets import load_dataset
    from clv_platform.transforms.order_gaps import order_stretches

    loaded = load_dataset(dataset)
    if loaded.dropped:
        print(f"backtest: {loaded.name}: rows left out: "
              + ", ".join(f"{n} {reason}" for reason, n in loaded.dropped.items()), file=sys.stderr)
    calibration_end, holdout_end, window_note = default_window(loaded, calibration_end, holdout_end)
    if holdout_end <= calibration_end:
        raise ValueError("--holdout-end must be after --calibration-end")
    config = clv.load_config(config_path)
    check_history(loaded.transactions, calibration_end, holdout_end)
    conn = frames.staging_connection(loaded.transactions)
    try:
        stretches = order_stretches(conn)
        gaps = stretches.unobserved
        for gap in gaps:
            print(f"backtest: {loaded.name}: {gap.describe()}: {GAP_WARNING}", file=sys.stderr)
        season = closed_season_note(gaps)
        if season:
            print(f"backtest: {loaded.name}: {season}", file=sys.stderr)
        if stretches.rhythm:
            print(f"backtest: {loaded.name}: {stretches.describe_rhythm()}", file=sys.stderr)
        try:
            label_days, label_note = label_window(conn, calibration_end, holdout_end, config)
            stand_in = None
        except clv.CycleTooShort as error:  # production serves the BTYD stand-in here: so does the backtest
            label_days, label_note, stand_in = None, f"none: the BTYD stand-in is served ({error})", str(error)
            print(f"backtest: {loaded.name}: the BTYD stand-in is served: {error}", file=sys.stderr)
        ml = clv.ml_backtest(conn, calibration_end, holdout_end, config, label_days=label_days, stand_in=stand_in)
    finally:
        conn.close()
    run = backtest.btyd_backtest(
        dataset, calibration_end, holdout_end, config.btyd_model, extra_predictions=ml.predictions,
        mean_columns=ml.mean_columns, served_errors=ml.served_errors, label_days=ml.label_days,
        mean_series=ml.means,
    )
    result = run.result
    # the rows of the file the backtest could not use, by reason (a CSV's missing ids, unreadable dates)
    result["input"] = {"rows_used": int(len(loaded.transactions)), "rows_dropped": dict(loaded.dropped),
                       # stretches without orders the store's rate cannot explain (transforms.order_gaps)
                       "order_gaps": [gap.as_dict() for gap in gaps],
                       # a stretch as long as a closed season: what the forecasts then get wrong
                       **({"closed_season": season} if season else {}),
                       # recurring runs read as the store's calendar (monthly invoicing dates, drops)
                       **({"order_rhythm": {"runs": len(stretches.rhythm), "description": stretches.describe_rhythm()}}
                          if stretches.rhythm else {})}
    result["served_total_interval"] = served_interval_section(result, ml)
    result["holdout"]["hybrid_point_vs_btyd"] = paired_mae_gain(run.frame, "hybrid", ("btyd", "btyd_point"))
    result["holdout"]["hybrid_ranking_vs"] = paired_gini_gains(run.frame, "hybrid_mean", ("btyd", "naive"))
    if with_npd:
        from clv_platform.models.npd import NPDModel
        from clv_platform.models.npd_backtest import DEFAULT_TRAINING_HORIZON_DAYS, run_npd_backtest

        # the AFT trains on one label window before the calibration end: at most the label window the
        # history supports (label_window), else a short file has no training rows at C - 90 days (none
        # where the CLV's BTYD stand-in is served for a closed season's cycles, not for a short file).
        # Where it has nothing to train on, the BTYD fallback is served and its reason says why
        npd_days = min(DEFAULT_TRAINING_HORIZON_DAYS, label_days or DEFAULT_TRAINING_HORIZON_DAYS)
        npd = run_npd_backtest(loaded.transactions, calibration_end, holdout_end, aft=NPDModel(n_threads=1),
                               training_horizon_days=npd_days)
        served = {k: npd["served"][k] for k in ("model", "reason", "comparisons", "validation")}
        # the p_alive production would serve at the calibration end: the stages and the served CLV read it
        reconciled = reconciled_alive(run, npd)
        result["npd"] = backtest.json_safe({"models": npd["models"], "training_window": npd.get("training_window"),
                                            "btyd_timing": npd.get("btyd_timing"),
                                            "order_calendar": npd.get("order_calendar"),
                                            "served": {**served, "holdout": npd["served"]["metrics"]},
                                            "p_alive": restage(run, npd, result, reconciled),
                                            "served_clv_reconciled": served_reconciled(
                                                run, reconciled, ml.trained[clv.HYBRID].model.serves_btyd)})
    if coverage_windows > 0:
        # the store-total interval over several windows: one window cannot tell noise from bias.
        # Holdouts of COVERAGE_WINDOW_DAYS so that earlier windows' errors are known at later
        # calibration ends (the bias term)
        days = int(min(COVERAGE_WINDOW_DAYS, (holdout_end - calibration_end).days))
        ends = backtest.coverage_window_ends(loaded.transactions, days, limit=coverage_windows)
        result["total_coverage_windows"] = backtest.json_safe(
            backtest.rolling_total_coverage(loaded.transactions, ends, days, config.btyd_model))
    result["window"]["chosen_by"] = window_note
    result["window"]["label_window_days"] = label_days
    result["window"]["label_window"] = label_note
    serving = ml.trained[clv.HYBRID].serving
    result["serving"] = {"served": serving.get("served"), "reason": serving.get("reason"),
                         # the served model's forecast total over the holdout (its mean, in season)
                         "served_mean_predicted_total": ml.served_mean_total,
                         "level_factor": ml.trained[clv.HYBRID].model.level,
                         "blend": ml.trained[clv.HYBRID].model.blend,
                         # the naive spend-rate rule's weight in the blend and its validation level
                         "naive_weight": ml.trained[clv.HYBRID].model.naive_weight,
                         "naive_level": ml.trained[clv.HYBRID].model.naive_level,
                         "component_gini": ml.trained[clv.HYBRID].selection.component_gini,
                         "sharpen": ml.trained[clv.HYBRID].model.sharpen,
                         "hybrid_sharpen": serving.get("hybrid_sharpen"),
                         "btyd_sharpen": serving.get("btyd_sharpen"),
                         "point_rule": ml.trained[clv.HYBRID].model.point_rule,
                         "hybrid_point_rule": serving.get("hybrid_point_rule"),
                         "hybrid_point_shrink": serving.get("hybrid_point_shrink"),
                         "btyd_point_rule": serving.get("btyd_point_rule"),
                         "btyd_point_validation": serving.get("btyd_point_comparison"),
                         "hybrid_point_validation": serving.get("hybrid_point_comparison"),
                         "blend_validation": ml.trained[clv.HYBRID].selection.blend_comparison,
                         # the mixture point rule's classifier: rounds, calibration shift, mean P vs buyers
                         "buy_classifier": serving.get("buy_classifier"),
                         "extension": serving.get("extension"),
                         # the retrained hybrid's label-window total over the BTYD's at the cutoff
                         # against the validated blend's (train.level_check)
                         "level_check": serving.get("level_check"),
                         # the validation window's level on the label window a year before the
                         # forecast's first, against the BTYD's miss there (train.year_back_check)
                         "year_back_check": serving.get("year_back_check"),
                         # the store's season the labels were taken out of (clv.season), and why none
                         "season": (None if ml.trained[clv.HYBRID].model.season is None
                                    else ml.trained[clv.HYBRID].model.season.as_dict()),
                         # the training windows' BTYD fits: the family served at the calibration end
                         "window_btyd": serving.get("window_btyd")}
    summary = {
        "seconds": ml.seconds,
        "variants": ml.summary(),
        "importance": ml.importance[["rank", "feature", "mean_abs_shap"]].to_dict(orient="records"),
    }
    return result, summary


def reconciled_alive(run, npd: dict) -> np.ndarray | None:
    """The p_alive production serves at the calibration end where the served next-purchase model beats
    the BTYD at 90 days beyond noise on its validation window (``clv.reconcile_alive``), else None."""
    from clv_platform.models import clv
    from clv_platform.models.npd_backtest import AFT

    p_purchase = npd.get("alive_p_purchase")
    if npd["served"].get("model") != AFT or p_purchase is None or run.chosen is None:
        return None
    summary, frame = run.summary, run.frame
    served, _ = clv.reconcile_alive_with(run.chosen.transactions, frame["btyd_p_alive"].to_numpy(dtype=float),
                                         np.zeros(len(frame)),
                                         p_purchase.reindex(summary.index.astype(str)).to_numpy(dtype=float),
                                         summary["frequency"], summary["T"],
                                         npd.get("alive_window_days", clv.ALIVE_EVIDENCE_DAYS))
    return served


def served_reconciled(run, reconciled: np.ndarray | None, serves_btyd: bool) -> dict:
    """The served forecast as scores/customer_clv writes it when the BTYD is served and the served
    next-purchase model lowers its p_alive (``reconciled``, from ``reconciled_alive``): the BTYD's spend scaled by the
    lowered p_alive over its own (``clv.alive_scale``), the point forecast and the mean alike. The
    ``served`` column of the holdout is the forecast before it (the CLV backtest runs without the
    next-purchase model); this block is the forecast served."""
    from clv_platform.models import clv, metrics

    if not serves_btyd or reconciled is None:
        return {"applies": False, "reason": "the hybrid is served: its CLV is its own" if not serves_btyd else
                "the served next-purchase model does not lower the BTYD's p_alive"}
    frame = run.frame
    scale = clv.alive_scale(frame["btyd_p_alive"].to_numpy(dtype=float), reconciled)
    y = frame["actual"].to_numpy(dtype=float)
    point, mean = frame["served"].to_numpy(dtype=float) * scale, frame["served_mean"].to_numpy(dtype=float) * scale
    before = metrics.regression_metrics(y, frame["served_mean"].to_numpy(dtype=float))
    after = metrics.regression_metrics(y, mean)
    return {"applies": True, "customers_scaled": int((scale < 1.0).sum()),
            "point_mae": metrics.regression_metrics(y, point)["mae"],
            "point_mae_before": metrics.regression_metrics(y, frame["served"].to_numpy(dtype=float))["mae"],
            "normalized_gini": after["normalized_gini"], "normalized_gini_before": before["normalized_gini"],
            "predicted_total": float(mean.sum()), "predicted_total_before": float(before["predicted_total"]),
            "actual_total": float(y.sum())}


def restage(run, npd: dict, result: dict, reconciled: np.ndarray | None) -> str:
    """The per-stage errors with the stages production would assign where the trained next-purchase
    model is served: its P(purchase within 90 days) waives the cadence test where it is high
    (``lifecycle.lifecycle_stages``), and where it also beats the BTYD at 90 days beyond noise on its
    validation window it lowers the BTYD's p_alive (``reconciled``, from ``reconciled_alive``); ``per_stage`` is rebuilt
    on both. Returns what p_alive the stages rest on."""
    from clv_platform.models import backtest, clv
    from clv_platform.models.npd_backtest import AFT

    if npd["served"].get("model") != AFT or npd.get("served_p_purchase") is None:
        return "the BTYD's (the served next-purchase model is the BTYD fallback)"
    summary, frame = run.summary, run.frame
    ids = summary.index.astype(str)
    btyd_alive = frame["btyd_p_alive"].to_numpy(dtype=float)
    served, said = btyd_alive, "the BTYD's (the served next-purchase model does not beat it at 90 days beyond noise)"
    if reconciled is not None:
        served = reconciled
        said = (f"lowered for {int((served < btyd_alive).sum())} of {len(served)} customers by the served "
                f"next-purchase model's P(purchase within {clv.ALIVE_EVIDENCE_DAYS} days) (clv.reconcile_alive)")
    # the same model columns as the per-stage errors before, in their order
    columns = list(dict.fromkeys(m for block in result["per_stage"].values() for m in block if m in frame.columns))
    result["per_stage"] = backtest.json_safe(run.restage(served, columns,
                                                         npd["served_p_purchase"].reindex(ids).to_numpy(dtype=float)))
    return f"{said}; per_stage uses it and the served model's P({clv.ALIVE_EVIDENCE_DAYS} d) for the cadence test"


INTERVAL_KINDS = {
    "served_total_p10 / served_total_p90": (
        "what scores/customer_clv serves for this total at the calibration end: the process interval below widened by "
        "the total errors its method recorded at training (t(0.9, n) x rms log error x sqrt(holdout / label window), "
        "added in quadrature; total_interval.widen); served_total_rule says which rule applied"),
    "served_total_process_p10 / _p90": (
        "its base, the process-only interval served before: normal, from the customers' P10/P90 (no model error)"),
    "total_p10 / total_p90": "customer draws x store-total factors of BTYD refits on bootstrap resamples (process + parameters)",
    "total_p10_process / _p90_process": "customer draws only (process noise given the parameters)",
}


def served_interval_section(result: dict, ml) -> dict:
    """The served store-total interval of the model the platform serves for the store, with the
    training windows behind it and what each interval field of ``intervals`` is."""
    block = (result.get("intervals") or {}).get("served") or {}
    record = ml.trained["hybrid"].serving.get("total_error") or {}
    return {
        "served_model": "btyd" if ml.trained["hybrid"].model.serves_btyd else "hybrid",
        **{k: block.get(k) for k in ("served_total_p10", "served_total_p90", "served_total_covered",
                                     "served_total_process_p10", "served_total_process_p90",
                                     "served_total_process_covered", "served_total_rule",
                                     "served_total_relative_width", "actual_total")},
        "training_windows": record,
        "kinds": INTERVAL_KINDS,
    }


MIN_HOLDOUT_DAYS = 28
MAX_DEFAULT_HOLDOUT_DAYS = 365


def default_window(loaded, calibration_end=None, holdout_end=None) -> tuple[pd.Timestamp, pd.Timestamp, str]:
    """The backtest window: as given, else the data set's own (CDNOW), else derived from the file.

    A CSV without a window holds out its last third (at least 28 days, at most a year) and
    calibrates on everything before: holdout end = last order day.
    """
    if calibration_end and holdout_end:
        return pd.Timestamp(calibration_end), pd.Timestamp(holdout_end), "given"
    if loaded.calibration_end is not None and not (calibration_end or holdout_end):
        return loaded.calibration_end, loaded.holdout_end, "the data set's published protocol"
    dates = loaded.transactions["order_date"]
    if dates.empty:
        raise ValueError(f"{loaded.name}: the file has no transactions")
    first, last = dates.min().normalize(), dates.max().normalize()
    if holdout_end is None:
        holdout_end = last
    holdout_end = pd.Timestamp(holdout_end)
    if calibration_end is None:
        span = (holdout_end - first).days
        holdout = int(min(max(span // 3, MIN_HOLDOUT_DAYS), MAX_DEFAULT_HOLDOUT_DAYS))
        calibration_end = holdout_end - pd.Timedelta(days=holdout)
    return pd.Timestamp(calibration_end), holdout_end, (
        "derived: the last third of the history (28 to 365 days) is the holdout, ending at the last order day")


COVERAGE_WINDOW_DAYS = 91
"""Holdout of each rolling window of ``--coverage-windows`` (the BTYD store-total interval's
coverage): a quarter, so that six of them fit a year and a half of history."""


def check_history(transactions: pd.DataFrame, calibration_end, holdout_end) -> None:
    """Fail with a plain sentence when the data cannot support a backtest at all: no history before
    the calibration end (at least three ``MIN_LABEL_DAYS`` windows) or nothing after it. Too few
    repeat buyers, or a history too short for a label window, is ``label_window``'s refusal (the rule
    production trains by, on the staged orders: a return is not a purchase day there)."""
    from clv_platform.models.clv import MIN_LABEL_DAYS

    calibration_end = pd.Timestamp(calibration_end)
    dates = transactions["order_date"]
    first, last = dates.min().normalize(), dates.max().normalize()
    have = (calibration_end - first).days
    if have < 0:
        raise ValueError(
            f"history too short: the file's orders span {(last - first).days} days ({first.date()} to {last.date()}) "
            f"and the calibration end {calibration_end.date()} is before the first order; the models need at least "
            f"{3 * MIN_LABEL_DAYS} days of history before the calibration end and orders after it")
    if have < 3 * MIN_LABEL_DAYS:
        raise ValueError(
            f"history too short: the calibration period runs {have} days ({first.date()} to "
            f"{calibration_end.date()}), the models need at least {3 * MIN_LABEL_DAYS} days (three label windows of "
            f"at least {MIN_LABEL_DAYS} days) before the calibration end; use a longer file or a later --calibration-end")
    if last <= calibration_end:
        raise ValueError(f"no transactions after the calibration end {calibration_end.date()} "
                         f"(the file ends {last.date()}): nothing to compare the forecasts with")


def label_window(conn, calibration_end, holdout_end, config) -> tuple[int, str]:
    """The ML models' label window h (days) and how it was set: production's rule
    (``clv.supported_label_window``: ``[horizon] label_horizon_days``, at most a third of the history
    since its 10th repeat buyer) with the holdout as a further cap. ``conn`` holds the data set's
    staging tables. A history with fewer than ``MIN_REPEAT_CUSTOMERS`` repeat buyers by the calibration
    end, or that supports less than ``MIN_LABEL_DAYS``, is refused in a sentence."""
    from clv_platform.models import clv

    calibration_end, holdout_end = pd.Timestamp(calibration_end), pd.Timestamp(holdout_end)
    holdout_days = (holdout_end - calibration_end).days
    configured = config.label_horizon_days
    try:
        window = clv.supported_label_window(conn, calibration_end.date(), min(configured, holdout_days))
    except clv.CycleTooShort:
        raise  # a closed-season store: the stand-in (run_backtest)
    except clv.HistoryTooShort as error:
        raise ValueError(f"history too short: {error}; use a longer file or a later --calibration-end") from None
    if window.days != window.configured:  # shortened by the history, or a closed season's whole cycle
        return window.days, window.note
    if window.days < configured:
        return window.days, f"{window.days} days (the holdout; [horizon] label_horizon_days is {configured})"
    return window.days, f"{window.days} days ([horizon] label_horizon_days)"


def json_view(result: dict) -> dict:
    """The documented ``--json`` shape, taken from the full backtest result."""
    params = {name: (result[name].get("params") or {}) for name in ("bgnbd", "pareto_nbd", "gamma_gamma")}
    params["bgnbd"] = params["bgnbd"] or dict.fromkeys(("r", "alpha", "a", "b"))
    params["pareto_nbd"] = params["pareto_nbd"] or dict.fromkeys(("r", "alpha", "s", "beta"))
    return {
        "dataset": result["dataset"],
        "customers": result["customers"],
        "window": result.get("window", {}),
        "input": result.get("input", {}),
        "bgnbd": {k: params["bgnbd"][k] for k in ("r", "alpha", "a", "b")},
        "pareto_nbd": {k: params["pareto_nbd"][k] for k in ("r", "alpha", "s", "beta")},
        "gamma_gamma": {k: params["gamma_gamma"].get(k) for k in ("p", "q", "v")},
        "holdout": {
            "actual_total": result["holdout"]["actual_total"],
            "models": {m: result["holdout"]["models"][m] for m in model_names(result)},
            **{key: result["holdout"][key] for key in ("hybrid_point_vs_btyd", "hybrid_ranking_vs")
               if result["holdout"].get(key)},
        },
        "per_stage": result["per_stage"],
        "deciles": result["deciles"],
        "btyd_selection": {k: result["btyd_selection"][k] for k in ("chosen", "penalizer", "reason")},
        "intervals": result.get("intervals", {}),
        "parameter_bootstrap": result.get("parameter_bootstrap", {}),
        "served_total_interval": result.get("served_total_interval", {}),
        "serving": result.get("serving", {}),
        "headline": headline(result),
        **({"npd": {"models": result["npd"]["models"],
                    # the label windows it trained on: the latest, and the season of a year ago (season_rows)
                    "training_window": result["npd"].get("training_window"),
                    # the family of the `btyd` timing block (BG/NBD, else MBG/NBD) and why
                    "btyd_timing": result["npd"].get("btyd_timing"),
                    # a rhythm store's order days, on which the BTYD curves and the fallback were read
                    "order_calendar": result["npd"].get("order_calendar"),
                    "served": {k: result["npd"]["served"][k] for k in ("model", "reason")},
                    # the 90-day paired Brier test on the validation window and what the stages rest on
                    "alive_evidence": {k: v for k, v in ((result["npd"]["served"].get("validation") or {})
                                                         .get("aft") or {}).items()
                                       if k.startswith("brier_90d_gain") or k == "alive_evidence"},
                    "p_alive": result["npd"].get("p_alive"),
                    # a served BTYD's forecast with that p_alive, as scores/customer_clv writes it
                    "served_clv_reconciled": result["npd"].get("served_clv_reconciled")}} if "npd" in result else {}),
        **({"total_coverage_windows": result["total_coverage_windows"]} if "total_coverage_windows" in result else {}),
    }


def headline(result: dict) -> dict:
    """Flat top-level numbers per model: ``<model>_mae``, ``_normalized_gini``, ``_predicted_total``,
    ``_total_error`` (predicted / actual total - 1), ``_customer_coverage`` and ``_total_covered``
    (1.0 / 0.0) of the 80 % intervals, plus the actual total and ``served_mean_total_error`` (the
    served model's mean, BTYD or hybrid), so dashboards and scripts read them without walking the
    nested sections."""
    actual = float(result["holdout"]["actual_total"])
    out = {"actual_total": actual}
    for name, block in result["holdout"]["models"].items():
        total = float(block["predicted_total"])
        out[f"{name}_mae"] = block["mae"]
        out[f"{name}_normalized_gini"] = block["normalized_gini"]
        out[f"{name}_predicted_total"] = total
        out[f"{name}_total_error"] = total / actual - 1.0 if actual else None
        interval = (result.get("intervals") or {}).get(name)
        if interval:
            out[f"{name}_customer_coverage"] = interval["customer_coverage"]
            if "customer_model_coverage" in interval:
                out[f"{name}_customer_model_coverage"] = interval["customer_model_coverage"]
            out[f"{name}_total_p10"] = interval["total_p10"]
            out[f"{name}_total_p90"] = interval["total_p90"]
            out[f"{name}_total_covered"] = 1.0 if interval["total_covered"] else 0.0
            if "served_total_p10" in interval:
                # the interval scores/customer_clv serves (process + the method's recorded total error)
                out[f"{name}_served_total_p10"] = interval["served_total_p10"]
                out[f"{name}_served_total_p90"] = interval["served_total_p90"]
                out[f"{name}_served_total_covered"] = 1.0 if interval["served_total_covered"] else 0.0
            if "point_within_interval" in interval:
                out[f"{name}_point_within_interval"] = interval["point_within_interval"]
    total = (result.get("serving") or {}).get("served_mean_predicted_total")
    if total is not None:
        # the served point's total (served_predicted_total) is a median's when the point rule is one:
        # the forecast total the store's scores sum to is the served model's mean (a served BTYD's
        # put into the store's season: not the plain `btyd` column's on a seasonal store)
        out["served_mean_predicted_total"] = float(total)
        out["served_mean_total_error"] = float(total) / actual - 1.0 if actual else None
    out.update(verdict(result))
    return out


def paired_mae_gain(frame: pd.DataFrame, model: str, rivals: tuple[str, ...], z: float = 1.645) -> dict:
    """The holdout MAE gain of ``model`` over the best of ``rivals`` with its paired standard error:
    the mean over customers of |rival - actual| - |model - actual| and sd / sqrt(n). ``significant``
    when the gain exceeds ``z`` standard errors (one-sided 5 %): a lower MAE within that noise is a
    tie, not a win (the selection on the validation window uses the same margin)."""
    from clv_platform.models import metrics

    present = [r for r in rivals if r in frame]
    if model not in frame or not present:
        return {}
    y = frame["actual"].to_numpy(dtype=float)
    rival = min(present, key=lambda r: float(np.abs(frame[r].to_numpy(dtype=float) - y).mean()))
    gain, se = metrics.paired_mae_gain(y, frame[rival].to_numpy(dtype=float), frame[model].to_numpy(dtype=float))
    return {"rival": rival, "gain": gain, "se": se, "z": z, "significant": bool(gain > z * se),
            "outcome": _outcome(gain, se, z)}


def _outcome(gain: float, se: float, z: float) -> str:
    """A paired gain read against its noise: ahead or behind beyond ``z`` standard errors, else a tie."""
    return "ahead" if gain > z * se else "behind" if gain < -z * se else "tie"


def paired_gini_gains(frame: pd.DataFrame, model: str, rivals: tuple[str, ...], z: float = 1.645) -> dict:
    """The holdout normalized-Gini gain of ``model`` over each of ``rivals`` with its bootstrap
    standard error (``metrics.paired_gini_gain``: customers resampled, both rankings on the same
    draws). ``ahead`` / ``behind`` when the gain exceeds ``z`` standard errors either way, else a
    tie: the verdict's ``hybrid_ahead_on_gini`` is the plain comparison the issue asks for, and
    this says whether a lead or a lag on one holdout is more than the noise of its customers."""
    from clv_platform.models import metrics

    if model not in frame:
        return {}
    y = frame["actual"].to_numpy(dtype=float)
    out = {}
    for rival in (r for r in rivals if r in frame):
        gain, se = metrics.paired_gini_gain(y, frame[rival].to_numpy(dtype=float), frame[model].to_numpy(dtype=float))
        out[rival] = {"gain": gain, "se": se, "z": z, "outcome": _outcome(gain, se, z)}
    return out


def verdict(result: dict) -> dict:
    """The issue's bar for the hybrid, read off the holdout: ranking (normalized Gini of its mean,
    which ranks and tiers customers) ahead of the BTYD and the naive rule; MAE of its point forecast
    below the BTYD's mean *and* the BTYD's own point forecast under its point rule (a median is
    compared with a median); its total (the mean's sum) within 15 % of the actual. Empty without
    the hybrid columns."""
    models = result["holdout"]["models"]
    if not {"hybrid", "hybrid_mean", "btyd", "naive"} <= set(models):
        return {}
    actual = float(result["holdout"]["actual_total"])
    gini, mae = models["hybrid_mean"]["normalized_gini"], models["hybrid"]["mae"]
    btyd_maes = [models["btyd"]["mae"]] + ([models["btyd_point"]["mae"]] if "btyd_point" in models else [])
    total_error = float(models["hybrid_mean"]["predicted_total"]) / actual - 1.0 if actual else None
    paired = result["holdout"].get("hybrid_point_vs_btyd") or {}
    ranking = result["holdout"].get("hybrid_ranking_vs") or {}
    return {
        "hybrid_ranking_gini": gini,
        "hybrid_point_mae": mae,
        "best_btyd_mae": min(btyd_maes),
        # 1.0 / 0.0 like the other flags, so every headline value is a float
        "hybrid_ahead_on_gini": float(gini is not None and gini > models["btyd"]["normalized_gini"]
                                      and gini > models["naive"]["normalized_gini"]),
        # ahead = lower MAE by more than 1.645 paired standard errors; a lower MAE within noise is
        # reported as a tie (hybrid_ties_on_mae), not as ahead
        "hybrid_ahead_on_mae": float(mae < min(btyd_maes) and paired.get("significant", True)),
        "hybrid_ties_on_mae": float(mae < min(btyd_maes) and not paired.get("significant", True)),
        "hybrid_mae_gain": paired.get("gain"),
        "hybrid_mae_gain_se": paired.get("se"),
        # the ranking's lead over each rival with its bootstrap SE, and whether it is beyond 1.645 of them
        **{f"hybrid_gini_{key}_vs_{rival}": block[key] for rival, block in ranking.items() for key in ("gain", "se")},
        **{f"hybrid_gini_behind_{rival}_beyond_noise": float(block["outcome"] == "behind")
           for rival, block in ranking.items()},
        "hybrid_total_within_15pct": float(total_error is not None and abs(total_error) <= 0.15),
    }


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _params_text(label: str, params: dict) -> str:
    """``BG/NBD r=0.243, ...``, or ``BG/NBD not fitted`` for a family that did not converge (its
    error is in the JSON; a store where nobody churns has no BG/NBD fit)."""
    if all(v is None for v in params.values()):
        return f"{label} not fitted"
    return f"{label} " + ", ".join(f"{k}={v:.4g}" for k, v in params.items() if v is not None)


def holdout_gains_text(result: dict) -> str | None:
    """One line: the hybrid's holdout leads over the baselines with their noise (Gini of its mean vs
    the BTYD and the naive rule, point MAE vs the better BTYD column), each ahead / tie / behind at
    1.645 standard errors; None when the backtest has no hybrid."""
    ranking, paired = result["holdout"].get("hybrid_ranking_vs") or {}, result["holdout"].get("hybrid_point_vs_btyd")
    if not ranking and not paired:
        return None
    parts = [f"Gini of its mean vs {rival} {block['gain']:+.4f} (SE {block['se']:.4f}, {block['outcome']})"
             for rival, block in ranking.items()]
    if paired:
        parts.append(f"point MAE vs {paired['rival']} gain {paired['gain']:+.4g} (SE {paired['se']:.4g}, "
                     f"{paired['outcome']})")
    return "hybrid on the holdout: " + "; ".join(parts)


SERVED_CHECKS = {"level_check": "level check", "level_check.win_at_served_level": "win at the served level",
                 "year_back_check": "year-back check"}
"""The checks a served hybrid passes after the validation window (``train.level_check``, its
``train.served_level_win``, ``train.year_back_check``): dotted ``serving`` key -> name in the reports."""


def served_checks(serving: dict) -> list[tuple[str, str]]:
    """(name, reason) of each of ``SERVED_CHECKS`` the training recorded, unless its reason is the
    serving reason already (the check that had the BTYD served)."""
    def recorded(key: str) -> dict:
        check = serving
        for part in key.split("."):
            check = check.get(part) if isinstance(check, dict) else None
        return check if isinstance(check, dict) else {}

    return [(name, check["reason"]) for key, name in SERVED_CHECKS.items()
            if (check := recorded(key)).get("reason") and check["reason"] not in str(serving.get("reason"))]


def table_text(result: dict, ml_summary: dict) -> str:
    """A readable plain-text summary of the backtest."""
    window = result.get("window", {})
    lines = [
        f"dataset {result['dataset']}: {result['customers']:,} customers, calibration to "
        f"{window.get('calibration_end')}, holdout to {window.get('holdout_end')}",
        "; ".join(_params_text(label, json_view(result)[key]) for label, key in (
            ("BG/NBD", "bgnbd"), ("Pareto/NBD", "pareto_nbd"), ("Gamma-Gamma", "gamma_gamma"))),
        "",
        f"{'model':<11} {'MAE':>9} {'RMSE':>9} {'Spearman':>9} {'Gini':>7} {'predicted':>13} {'actual':>13}",
    ]
    actual = result["holdout"]["actual_total"]
    for name in model_names(result):
        m = result["holdout"]["models"][name]
        lines.append(
            f"{name:<11} {_fmt(m['mae'], 2):>9} {_fmt(m['rmse'], 2):>9} {_fmt(m['spearman'], 4):>9} "
            f"{_fmt(m['normalized_gini'], 4):>7} {_fmt(m['predicted_total'], 0):>13} {_fmt(actual, 0):>13}"
        )
    gains = holdout_gains_text(result)
    if gains:
        lines += ["", gains]
    chosen = result.get("btyd_selection", {})
    lines += ["", f"BTYD family: {chosen.get('chosen')} - {chosen.get('reason')}"]
    for row in chosen.get("candidates", []):
        ll = row.get("log_likelihood")
        lines.append(f"  {row['family']:<11} penalizer {row['penalizer']:<5g} {row['status']:<10} "
                     f"LL {_fmt(ll, 1):>12} {row.get('reason') or ''}")
    intervals = result.get("intervals", {})
    if intervals:
        lines += ["", "80 % intervals (P10-P90): share of customers whose holdout spend falls inside, and the total"]
        for name, block in intervals.items():
            lines.append(
                f"  {name:<8} customers {block['customer_coverage']:.1%} (the model expects "
                f"{_fmt(block.get('customer_model_coverage'), 3)}; buyers {_fmt(block['buyer_coverage'], 3)}), "
                f"total {block['total_p10']:,.0f} - {block['total_p90']:,.0f} vs actual {block['actual_total']:,.0f} "
                f"({'covered' if block['total_covered'] else 'NOT covered'}; customer noise only "
                f"{block.get('total_p10_process', 0):,.0f} - {block.get('total_p90_process', 0):,.0f})")
            if "served_total_p10" in block:
                lines.append(
                    f"  {'':<8} served interval {block['served_total_p10']:,.0f} - {block['served_total_p90']:,.0f} "
                    f"({'covered' if block['served_total_covered'] else 'NOT covered'}; process-only base "
                    f"{block['served_total_process_p10']:,.0f} - {block['served_total_process_p90']:,.0f}, "
                    f"{'covered' if block['served_total_process_covered'] else 'NOT covered'}): {block['served_total_rule']}")
        boot = result.get("parameter_bootstrap") or {}
        if boot:
            lines.append(f"  parameter term: {boot.get('replicates', 0)} customer-bootstrap refits of {boot.get('family')} "
                         f"({boot.get('failed', 0)} failed), total factor P10-P90 {_fmt(boot.get('factor_p10'), 3)} - "
                         f"{_fmt(boot.get('factor_p90'), 3)} {boot.get('reason', '')}")
    rolling = result.get("total_coverage_windows")
    if rolling:
        lines += ["", f"BTYD store-total 80 % interval over {rolling['evaluated']} rolling windows of "
                  f"{rolling['holdout_days']} days: coverage {_fmt(rolling.get('coverage'), 2)} (misses above "
                  f"{rolling.get('misses_above')}, below {rolling.get('misses_below')}; mean total error "
                  f"{_fmt(rolling.get('mean_total_error'), 3)}); {rolling.get('diagnosis')}; with the bias term "
                  f"({rolling.get('bias_term')}): {_fmt(rolling.get('adjusted_coverage'), 2)} over "
                  f"{rolling.get('adjusted_evaluated')} windows (symmetric {_fmt(rolling.get('symmetric_adjusted_coverage'), 2)}); "
                  f"served rule {_fmt(rolling.get('served_coverage'), 2)} over {rolling.get('served_evaluated')} windows "
                  f"({rolling.get('served_with_errors')} with validation errors; its process-only base "
                  f"{_fmt(rolling.get('served_process_coverage'), 2)}; mean width "
                  f"{_fmt(rolling.get('served_mean_relative_width'), 3)} of the total)"]
        for row in rolling["windows"]:
            if row.get("evaluated"):
                lines.append(f"  {row['calibration_end']} to {row['holdout_end']}: predicted "
                             f"{row['predicted_total']:,.0f}, interval {row['total_p10']:,.0f} - {row['total_p90']:,.0f}, "
                             f"actual {row['actual_total']:,.0f} ({row['side']})"
                             + (f"; with bias term {row['adjusted_p10']:,.0f} - {row['adjusted_p90']:,.0f}"
                                if "adjusted_p10" in row else "")
                             + (f"; served rule {row['served_total_p10']:,.0f} - {row['served_total_p90']:,.0f}"
                                f" ({'covered' if row['served_total_covered'] else 'not covered'})"
                                if "served_total_p10" in row else ""))
            else:
                lines.append(f"  {row['calibration_end']}: not evaluated - {row.get('reason')}")
    serving = result.get("serving") or {}
    if serving:
        head = result.get("headline") or headline(result)
        served_total = (f"; its forecast total (the mean's) {head['served_mean_predicted_total']:,.0f}, "
                        f"{head['served_mean_total_error']:+.1%} against the actual"
                        if head.get("served_mean_total_error") is not None else "")
        lines += ["", f"served for this store: {serving.get('served')} - {serving.get('reason')}{served_total}",
                  f"hybrid level factor (validation window) {serving.get('level_factor', 1.0):.3f}; booster blend "
                  f"weight {serving.get('blend', 1.0):.2f}; point rule (chosen on the validation window): served "
                  f"{serving.get('point_rule') or 'sharpen'} (gamma {serving.get('sharpen', 1.0):g}), hybrid "
                  f"{serving.get('hybrid_point_rule') or 'sharpen'} (gamma {serving.get('hybrid_sharpen') or 1.0:g}, "
                  f"shrink to the BTYD mean {serving.get('hybrid_point_shrink') or 1.0:g}), "
                  f"BTYD {serving.get('btyd_point_rule') or 'sharpen'} (gamma {serving.get('btyd_sharpen') or 1.0:g}); "
                  "BTYD extension "
                  f"factor {(serving.get('extension') or {}).get('factor', 1.0):.3f} "
                  f"({(serving.get('extension') or {}).get('reason', '')}); season: "
                  f"{(serving.get('season') or {}).get('reason') or 'none recorded'}"
                  + "".join(f"; {name}: {why}" for name, why in served_checks(serving))]
    hybrid = ml_summary["variants"]["hybrid"]
    selection = hybrid["selection"]
    lines += ["", f"objective chosen on the validation window ending {selection['validation_window_end']} "
              f"by {selection.get('criterion') or selection['metric']}: {selection['chosen']} ({hybrid['rounds']} rounds, "
              f"booster weight in the blend with the BTYD {selection.get('blend', 1.0):g})"]
    for row in selection["comparison"]:
        lines.append(
            f"  {row['objective']:<20} MAE {row['mae']:8.3f}  Gini {_fmt(row['normalized_gini'], 4):>7}  "
            f"total {row['predicted_total']:>12,.0f} / {row['actual_total']:,.0f}  rounds {row['rounds']}"
            + (f"  blend w {row['blend_weight_chosen']:g} MAE {row['blend_mae']:.3f}"
               if row.get("blend_mae") is not None else "")
        )
    if "npd" in result:
        lines += ["", "next purchase: MAE days (buyers in the holdout), AUC / Brier of P(purchase within 30 / 90 days)",
                  f"{'model':<8} {'MAE d':>8} {'MAE d|buy':>10} {'AUC30':>7} {'Brier30':>8} {'AUC90':>7} {'Brier90':>8}"]
        for name, m in result["npd"]["models"].items():
            lines.append(
                f"{name:<8} {_fmt(m.get('mae_days'), 1):>8} {_fmt(m.get('mae_days_given_purchase'), 1):>10} "
                f"{_fmt(m.get('auc_30d'), 3):>7} {_fmt(m.get('brier_30d'), 4):>8} "
                f"{_fmt(m.get('auc_90d'), 3):>7} {_fmt(m.get('brier_90d'), 4):>8}"
            )
        timing = result["npd"].get("btyd_timing") or {}
        if timing.get("reason", "fitted") != "fitted":
            lines.append(f"btyd timing: {timing.get('family') or 'none'} ({timing['reason']})")
        if result["npd"].get("order_calendar"):
            lines.append(f"btyd, naive and fallback read on the store's calendar: {result['npd']['order_calendar']}")
        served = result["npd"].get("served")
        if served:
            lines.append(f"served: {served['model']} ({served['reason']})")
    return "\n".join(lines)


def ml_section_html(ml_summary: dict) -> str:
    """The report section on objective selection and feature importance."""
    hybrid = ml_summary["variants"]["hybrid"]
    selection = hybrid["selection"]
    rows = "".join(
        f"<tr><td>{html.escape(r['objective'])}</td><td>{r['rounds']}</td><td>{r['mae']:.3f}</td>"
        f"<td>{r['rmse']:.3f}</td><td>{(r['normalized_gini'] or 0):.4f}</td><td>{r['predicted_total']:,.0f}</td>"
        f"<td>{r['actual_total']:,.0f}</td></tr>"
        for r in selection["comparison"]
    )
    importance = "".join(
        f"<tr><td>{r['rank']}</td><td>{html.escape(r['feature'])}</td><td>{r['mean_abs_shap']:.4f}</td></tr>"
        for r in ml_summary["importance"][:15]
    )
    return (
        "<h2>XGBoost objective selection</h2>"
        f"<p>Trained on windows ending {', '.join(selection['train_window_ends'])}, validated on the window ending "
        f"{selection['validation_window_end']}, chosen by {html.escape(selection['metric'])}: "
        f"<b>{html.escape(selection['chosen'])}</b>. Final models: hybrid trained on windows ending "
        f"{', '.join(hybrid['window_ends'])} ({hybrid['n_train']:,} rows, {hybrid['rounds']} rounds).</p>"
        "<table><thead><tr><th>objective</th><th>rounds</th><th>MAE</th><th>RMSE</th><th>normalized Gini</th>"
        f"<th>predicted total</th><th>actual total</th></tr></thead><tbody>{rows}</tbody></table>"
        "<h2>Hybrid feature importance (mean |SHAP|)</h2>"
        f"<table><thead><tr><th>rank</th><th>feature</th><th>mean |SHAP|</th></tr></thead><tbody>{importance}"
        "</tbody></table>"
    )


def extra_sections_html(result: dict) -> str:
    """BTYD family choice, interval coverage, serving decision and the next-purchase comparison."""
    esc = html.escape
    chosen = result.get("btyd_selection", {})
    rows = "".join(
        f"<tr><td>{esc(r['family'])}</td><td>{r['penalizer']:g}</td><td>{esc(r['status'])}</td>"
        f"<td>{_fmt(r.get('log_likelihood'), 1)}</td><td>{esc(r.get('reason') or '')}</td></tr>"
        for r in chosen.get("candidates", [])
    )
    gains = holdout_gains_text(result)
    gaps = (result.get("input") or {}).get("order_gaps") or []
    # first: a stretch without orders the rate cannot explain makes every figure below suspect
    parts = [f"<h2>The data</h2><p>{esc(gap['description'])}: {esc(GAP_WARNING)}.</p>" for gap in gaps]
    season = (result.get("input") or {}).get("closed_season")
    parts += [f"<p>{esc(season[0].upper() + season[1:])}.</p>"] if season else []
    rhythm = (result.get("input") or {}).get("order_rhythm")
    parts += [f"<h2>The store's rhythm</h2><p>{esc(rhythm['description'])}.</p>"] if rhythm else []
    parts += [f"<h2>The hybrid against the baselines</h2><p>{esc(gains)}</p>"] if gains else []
    parts += [f"<h2>BTYD family</h2><p>Served: <b>{esc(str(chosen.get('chosen')))}</b> - "
             f"{esc(str(chosen.get('reason')))}</p>",
             "<table><thead><tr><th>family</th><th>penalizer</th><th>status</th><th>log-likelihood</th>"
             f"<th>note</th></tr></thead><tbody>{rows}</tbody></table>"]
    intervals = result.get("intervals", {})
    if intervals:
        body = "".join(
            f"<tr><td>{esc(name)}</td><td>{b['customer_coverage']:.1%}</td>"
            f"<td>{_fmt(b.get('customer_model_coverage'), 3)}</td><td>{_fmt(b['buyer_coverage'], 3)}</td>"
            f"<td>{b['total_p10']:,.0f}</td><td>{b['total_p90']:,.0f}</td><td>{b['actual_total']:,.0f}</td>"
            f"<td>{'yes' if b['total_covered'] else 'no'}</td>"
            f"<td>{_fmt(b.get('served_total_process_p10'), 0)} - {_fmt(b.get('served_total_process_p90'), 0)}</td>"
            f"<td>{_fmt(b.get('served_total_p10'), 0)} - {_fmt(b.get('served_total_p90'), 0)}</td>"
            f"<td>{'' if 'served_total_covered' not in b else ('yes' if b['served_total_covered'] else 'no')}</td>"
            "</tr>" for name, b in intervals.items())
        rules = "".join(f"<li>{esc(name)}: {esc(str(b['served_total_rule']))}</li>"
                        for name, b in intervals.items() if "served_total_rule" in b)
        parts.append("<h2>80 % intervals (P10-P90)</h2><table><thead><tr><th>model</th><th>customers covered</th><th>model's own mass</th>"
                     "<th>buyers covered</th><th>total P10 (draws + parameters)</th><th>total P90</th><th>actual total</th>"
                     "<th>total covered</th><th>process-only total (served before)</th><th>served total interval</th>"
                     f"<th>served covers</th></tr></thead><tbody>{body}</tbody></table>"
                     + "".join(f"<p>{esc(k)}: {esc(v)}</p>" for k, v in INTERVAL_KINDS.items())
                     + (f"<ul>{rules}</ul>" if rules else ""))
    rolling = result.get("total_coverage_windows")
    if rolling:
        body = "".join(
            f"<tr><td>{esc(r['calibration_end'])}</td><td>{esc(r['holdout_end'])}</td>"
            + (f"<td>{r['predicted_total']:,.0f}</td><td>{r['total_p10']:,.0f}</td><td>{r['total_p90']:,.0f}</td>"
               f"<td>{r['actual_total']:,.0f}</td><td>{esc(r['side'])}</td>"
               f"<td>{_fmt(r.get('adjusted_p10'), 0)}</td><td>{_fmt(r.get('adjusted_p90'), 0)}</td>"
               f"<td>{_fmt(r.get('served_total_p10'), 0)}</td><td>{_fmt(r.get('served_total_p90'), 0)}</td>"
               if r.get("evaluated") else f"<td colspan='9'>{esc(str(r.get('reason')))}</td>")
            + "</tr>" for r in rolling["windows"])
        parts.append(
            f"<h2>Store-total interval over rolling windows</h2><p>BTYD 80 % interval of the store total over "
            f"{rolling['evaluated']} windows of {rolling['holdout_days']} days: coverage "
            f"{_fmt(rolling.get('coverage'), 2)}, misses above {rolling.get('misses_above')}, below "
            f"{rolling.get('misses_below')}, mean total error {_fmt(rolling.get('mean_total_error'), 3)}. "
            f"{esc(str(rolling.get('diagnosis')))}. With the bias term ({esc(str(rolling.get('bias_term')))}): "
            f"coverage {_fmt(rolling.get('adjusted_coverage'), 2)} over {rolling.get('adjusted_evaluated')} windows "
            f"(symmetric widening only: {_fmt(rolling.get('symmetric_adjusted_coverage'), 2)}). The served rule "
            f"(what scores/customer_clv serves): coverage {_fmt(rolling.get('served_coverage'), 2)} over "
            f"{rolling.get('served_evaluated')} windows, mean width {_fmt(rolling.get('served_mean_relative_width'), 3)} "
            "of the predicted total.</p>"
            "<table><thead><tr><th>calibration end</th><th>holdout end</th><th>predicted</th><th>P10</th>"
            "<th>P90</th><th>actual</th><th>actual is</th><th>P10 with bias term</th><th>P90 with bias term</th>"
            f"<th>served P10</th><th>served P90</th></tr></thead><tbody>{body}</tbody></table>")
    serving = result.get("serving") or {}
    if serving:
        parts.append(f"<p>Served for this store: <b>{esc(str(serving.get('served')))}</b> - "
                     f"{esc(str(serving.get('reason')))}. Point forecast: the rule with the lowest validation "
                     "MAE - the mean sharpened as c &middot; p^&gamma; (same total and ranking) or the predictive "
                     f"median (0 below a 50 % chance to buy): served {esc(str(serving.get('point_rule') or 'sharpen'))} "
                     f"(&gamma; {serving.get('sharpen', 1.0):g}), hybrid {esc(str(serving.get('hybrid_point_rule') or 'sharpen'))} "
                     f"(&gamma; {serving.get('hybrid_sharpen') or 1.0:g}), BTYD "
                     f"{esc(str(serving.get('btyd_point_rule') or 'sharpen'))} (&gamma; {serving.get('btyd_sharpen') or 1.0:g}). "
                     "The <i>hybrid</i> row is the hybrid's point forecast, <i>hybrid_mean</i> its conditional mean "
                     "(rank it by this one's Gini), <i>btyd_point</i> the BTYD's own point forecast, <i>served</i> "
                     "what the platform serves.</p>")
        parts += [f"<p>{esc(name.capitalize())} of the served hybrid: {esc(why)}.</p>"
                  for name, why in served_checks(serving)]
    npd = (result.get("npd") or {}).get("models") or {}
    if npd:
        horizons = sorted({int(k[4:-1]) for block in npd.values() for k in block if k.startswith("auc_")})
        head = "".join(f"<th>AUC {h} d</th><th>Brier {h} d</th>" for h in horizons)
        body = "".join(
            f"<tr><td>{esc(name)}</td><td>{_fmt(m.get('mae_days'), 1)}</td>"
            f"<td>{_fmt(m.get('mae_days_given_purchase'), 1)}</td>"
            + "".join(f"<td>{_fmt(m.get(f'auc_{h}d'), 3)}</td><td>{_fmt(m.get(f'brier_{h}d'), 4)}</td>" for h in horizons)
            + "</tr>" for name, m in npd.items())
        parts.append("<h2>Next purchase: naive cadence vs BTYD timing vs XGBoost AFT</h2>"
                     "<p>MAE in days on the customers who bought in the holdout (unconditional median, and the "
                     "median given a purchase within the holdout); AUC and Brier score of P(purchase within h days) "
                     "on every customer.</p>"
                     f"<table><thead><tr><th>model</th><th>MAE d</th><th>MAE d | buy</th>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
        served = (result.get("npd") or {}).get("served")
        if served:
            parts.append(f"<p>What the platform would serve at the calibration end (<code>ml/npd_model</code>'s "
                         f"rule on the same history): <b>{esc(str(served['model']))}</b> - "
                         f"{esc(str(served['reason']))}. <i>btyd_fallback</i> is that fallback (the BTYD family of "
                         "clv.toml), <i>btyd</i> the BG/NBD timing baseline.</p>")
        calendar = (result.get("npd") or {}).get("order_calendar")
        if calendar:
            parts.append(f"<p>The BTYD curves, the naive cadence and the fallback were read on the store's calendar: "
                         f"{esc(calendar)}.</p>")
    return "".join(parts)


def write_report(result: dict, ml_summary: dict, path: str | Path) -> Path:
    """``render_report_html`` of the backtest, with the ML, BTYD-choice, interval and next-purchase
    sections added before the end."""
    from clv_platform.models.backtest import render_report_html

    out = render_report_html(result, path)
    extra = ml_section_html(ml_summary) + extra_sections_html(result)
    document = out.read_text(encoding="utf-8").replace("</body>", extra + "</body>", 1)
    out.write_text(document, encoding="utf-8")
    return out


def run_forecast(args: argparse.Namespace) -> dict | None:
    """The revenue-forecast backtest when asked for (or on a demo data set, where it is the only one)."""
    from clv_platform.forecast.backtest import DEMO_DATASETS, run_forecast_backtest

    if not (args.forecast or args.forecast_only or args.dataset in DEMO_DATASETS):
        return None
    return run_forecast_backtest(args.dataset, args.forecast_cutoff, args.config)


STORE = "store"
"""``--dataset store``: the store the settings point at (``CLV_SOURCE``'s database, ``CLV_DUCKDB_PATH``)."""


def resolve_dataset(dataset: str) -> str:
    """``--dataset`` as a loader reads it: ``store`` becomes the configured store's DuckDB file, which
    must exist (the backtest never builds or changes a store); anything else is passed on."""
    if dataset != STORE:
        return dataset
    from clv_platform.settings import load_settings

    settings = load_settings()
    if not settings.duckdb_path.is_file():
        raise FileNotFoundError(f"no store at {settings.duckdb_path} (CLV_SOURCE={settings.source}): build it first "
                                "(`clv-platform files`, `make demo`, or a refresh of the live store) or pass its file")
    return str(settings.duckdb_path)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from clv_platform.forecast.backtest import DEMO_DATASETS, forecast_text, write_forecast_report
    from clv_platform.models.backtest import json_safe

    try:
        args.dataset = resolve_dataset(args.dataset)
        forecast = run_forecast(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"backtest: {error}", file=sys.stderr)
        return 2
    if forecast is not None and (args.forecast_only or args.dataset in DEMO_DATASETS):
        # the CLV backtest needs CDNOW or a CSV; the demo data sets are forecast-only
        if args.report:
            write_forecast_report(forecast, args.report)
        if args.json:
            print(json.dumps(json_safe({"forecast": forecast}), allow_nan=False, default=str))
        else:
            print(forecast_text(forecast))
            print(f"\nrun time: {time.perf_counter() - started:.1f} s")
            if args.report:
                print(f"report: {Path(args.report).resolve()}")
        return 0
    try:
        # Everything a library prints while fitting (optimizer messages) goes to stderr, so stdout
        # holds only the report - one JSON object with --json.
        with contextlib.redirect_stdout(sys.stderr):
            result, ml_summary = run_backtest(
                args.dataset, args.calibration_end, args.holdout_end, args.config, with_npd=not args.skip_npd,
                coverage_windows=args.coverage_windows,
            )
    except (ValueError, FileNotFoundError) as error:
        print(f"backtest: {error}", file=sys.stderr)
        return 2
    if args.report:
        write_report(result, ml_summary, args.report)
        if forecast is not None:
            write_forecast_report(forecast, args.report)
    if args.json:
        view = json_view(result)
        if forecast is not None:
            view["forecast"] = forecast
        # the serving and interval sections added here may hold NaN (a validation window without a
        # buyer has no Gini): null in JSON, as in the backtest's own result
        print(json.dumps(json_safe(view), allow_nan=False, default=str))
    else:
        print(table_text(result, ml_summary))
        if forecast is not None:
            print("\n" + forecast_text(forecast))
        print(f"\nrun time: {time.perf_counter() - started:.1f} s")
        if args.report:
            print(f"report: {Path(args.report).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clv-platform backtest", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
