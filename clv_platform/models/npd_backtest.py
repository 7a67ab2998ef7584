"""Next-purchase-date backtest: naive cadence vs BG/NBD timing vs XGBoost AFT on a holdout.

Protocol (nothing after ``calibration_end`` C is used to fit anything):

* AFT training rows: features at C - H from orders <= C - H, label = days from C - H to the
  next purchase in (C - H, C], right-censored at H when there is none
  (``features.build_training_frame(conn, C, H)``).
* Stacked with them, the H days after C a year earlier: features at C - 365, labels in
  (C - 365, C - 365 + H] (``season_window_end``), when the history has them: the season the model is
  about to predict, which the latest window of a seasonal store never holds.
* Scoring: features at C (``features.build_scoring_frame``); BG/NBD fitted on the calibration
  summary (``btyd.summarize`` / ``btyd.fit_btyd``); the naive model's population interval from
  the features at C.
* Evaluation on (C, holdout_end]: ``mae_days`` (and the median absolute error) of predicted vs
  actual days to the first holdout purchase, on the customers who did buy; AUC and Brier score
  of P(purchase within 30 / 90 days) on everyone known at C.

The feature SQL is the platform's own (``transforms/features.py``), run on an in-memory DuckDB
holding a minimal ``staging`` schema built from the transactions frame (one order per row, no
lines, no profiles). Features that come out all-null or constant on such data (basket, refund,
discount, profile age) are dropped before training.

What the platform would serve: ``ml/npd_model``'s rule run on the same history. The AFT's shape is
trained one window earlier (features at C - 2H, labels in (C - 2H, C - H]) and scored on the
latest window before C (features at C - H, outcomes in (C - H, C]) next to the BTYD fallback
fitted at C - H (``earns_its_place``), and on the coming season of a year ago (``season_check``);
the ``served`` block is the holdout of the winner.

Caveat on ``mae_days``: it is measured on holdout buyers only, whose actual times are at most
the holdout length L, so it favours models that predict short times (the unconditional median
of a customer who probably never returns is years away). ``mae_days_given_purchase`` scores
each model's median time *given a purchase within L* instead, the like-for-like point
prediction for that subset. Read both next to the probability metrics, which cover everyone.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from clv_platform.core.thresholds import ModelRegressionSettings, compare_runs
from clv_platform.models import btyd, clv, metrics
from clv_platform.models.frames import load_staging, usable_features
from clv_platform.models.npd import (MIN_TRAINING_ROWS, BTYDNextPurchase, BTYDTiming, HistoryTooShort, NaiveCadence,
                                     NPDModel, predict_on_calendar)
from clv_platform.transforms import features
from clv_platform.transforms.order_gaps import OrderGap, first_and_more, gaps_after, order_stretches

NAIVE = "naive"
BTYD = "btyd"
AFT = "aft"
FALLBACK = "btyd_fallback"
"""The platform's own BTYD next-purchase fallback (``npd.BTYDNextPurchase`` on the BTYD family and
settings of clv.toml, fitted at C): what ``ml/npd_model`` serves when the AFT does not earn its place.
``BTYD`` is the BG/NBD timing model, the textbook baseline."""
DEFAULT_TRAINING_HORIZON_DAYS = 90
"""Label window of the AFT training rows. 90 days keeps the training snapshot (C - 90) close to
the scoring population's tenure and covers both probability horizons inside the window; longer
times are extrapolated by the fitted distribution."""
SEASON_DAYS = 365
"""A year: the AFT that predicts the H days after E also trains on the window of those H days one
year earlier (``season_window_end``), where a seasonal store's customers showed the coming season."""


def season_window_end(end, horizon: int):
    """End of the label window that covers, a year earlier, the ``horizon`` days a model trained on
    the window ending ``end`` predicts: (end - 365, end - 365 + H] ends at ``end - (365 - H)``.

    The latest window alone never holds the coming season (a store's December buyers are silent
    from February to October, so a model trained on August-October says they will not buy in
    November-January); the feature ``orders_next_90d_last_year`` tells the season's buyers apart,
    and the year-ago window is where the model sees what they do next."""
    return end - timedelta(days=SEASON_DAYS - int(horizon))


def season_frames(get, cutoff, horizon: int) -> tuple:
    """The three year-ago windows of ``horizon`` days that ``ml/npd_model`` and the backtest both
    read, each by ``get(window end)``: the coming season a year ago (ending C - 365 + H: stacked with
    the latest window, and the holdout of ``season_validation``), the window ending C - 365 (the
    season of the earlier window, and the season validation's training) and that one's own season
    (ending C - 730 + H)."""
    before_end = cutoff - timedelta(days=SEASON_DAYS)  # season_window_end(C - H, H)
    return get(season_window_end(cutoff, horizon)), get(before_end), get(season_window_end(before_end, horizon))


def _refit(chosen: NPDModel, settings: dict, rows: pd.DataFrame, features: list[str]) -> NPDModel:
    """The chosen distribution and scale trained again on ``rows`` (an out-of-time check's model)."""
    return NPDModel(**{**settings, "distribution": chosen.distribution, "scale": chosen.scale}).fit(rows, features)


def _trainable(frame: pd.DataFrame | None) -> bool:
    """A window a model can train on: ``npd.MIN_TRAINING_ROWS`` rows with an observed purchase."""
    return (frame is not None and len(frame) >= MIN_TRAINING_ROWS
            and bool(frame[features.LABEL_COLUMNS[-1]].notna().any()))


def with_season(latest: pd.DataFrame, season: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """(training rows, season rows used): ``latest`` stacked with the year-ago window ``season``
    when that window has the rows a model trains on (``npd.MIN_TRAINING_ROWS``) and an observed
    purchase; else ``latest`` alone (a history shorter than a year and a window, 0 rows used)."""
    if not _trainable(season):
        return latest, 0
    return pd.concat([latest, season], ignore_index=True), len(season)


def season_validation(season: pd.DataFrame | None, before_season: pd.DataFrame | None,
                      before_that: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(training rows, holdout rows) of the season validation, or None when the history is too short.

    The holdout is the window of the coming season a year ago (``season``: ending C - 365 + H,
    features at C - 365); the candidate is trained as ``ml/npd_model`` would have been at C - 365:
    the window ending there (``before_season``) with its own year-ago window (``before_that``,
    ending C - 730 + H). The latest window alone cannot show whether a model knows the season it
    is about to predict: on a gift store validated on August-October, the model that learned
    December and the one that did not look alike."""
    if not (_trainable(season) and _trainable(before_season)):
        return None
    return with_season(before_season, before_that)[0], season


def season_check(validation: tuple[pd.DataFrame, pd.DataFrame] | None, horizon: int, features: list[str],
                 chosen: NPDModel, settings: dict, pareto_start: dict | None = None) -> dict:
    """The chosen shape against the BTYD fallback on the coming season a year ago (``season_validation``):
    the shape trained on its rows and a BTYD fitted on its holdout's features, both scored on that
    holdout; ``paired_brier`` of P(purchase within 90 days) under ``season_`` names
    (``season_brier_90d_gain_over_btyd``, its SE, ``season_evidence``) with ``season_validation_rows``.
    Empty when there is no such window or either model cannot be fitted on it."""
    if validation is None:
        return {}
    train, holdout = validation
    trained_p, baseline_p = {}, {}
    try:
        model = _refit(chosen, settings, train, features)
        _keep_alive_test_probability(model.predict(holdout, within_days=horizon), trained_p)
        fallback_metrics(holdout, horizon, pareto_start, baseline_p)
    except (ValueError, KeyError, ArithmeticError):
        return {}
    test = alive_test(holdout, trained_p, baseline_p, horizon)
    if not test:
        return {}
    gain = f"brier_{ALIVE_TEST_DAYS}d_gain_over_btyd"
    return {f"season_{gain}": test[gain], f"season_{gain}_se": test[f"{gain}_se"],
            "season_evidence": test["alive_evidence"], "season_validation_rows": int(len(holdout))}


def holdout_days_to_next(transactions: pd.DataFrame, calibration_end, holdout_end) -> pd.Series:
    """Days from ``calibration_end`` to each customer's first purchase in (C, holdout_end]."""
    dates = pd.to_datetime(transactions["order_date"]).dt.normalize()
    inside = (dates > calibration_end) & (dates <= holdout_end)
    first = dates[inside].groupby(transactions.loc[inside, "customer_id"].astype(str)).min()
    return (first - calibration_end).dt.days.astype(float)


def evaluate(actual_days: np.ndarray, predictions: pd.DataFrame, horizons: tuple[int, ...]) -> dict:
    """Timing errors on the buyers and AUC / Brier of each horizon's probability on everyone."""
    bought = np.isfinite(actual_days)
    predicted = predictions["days_to_next"].to_numpy(dtype=float)
    given = predictions["days_to_next_given_purchase"].to_numpy(dtype=float)
    errors = np.abs(predicted[bought] - actual_days[bought])
    block = {
        "customers": int(len(actual_days)),
        "buyers": int(bought.sum()),
        "mae_days": metrics.mae(actual_days[bought], predicted[bought]),
        "median_ae_days": float(np.median(errors)) if errors.size else float("nan"),
        "mae_days_given_purchase": metrics.mae(actual_days[bought], given[bought]),
        "median_predicted_days": float(np.median(predicted)),
    }
    for h in horizons:
        y = (bought & (actual_days <= h)).astype(int)
        p = np.clip(predictions[f"p_purchase_{h}d"].to_numpy(dtype=float), 0.0, 1.0)
        block[f"positives_{h}d"] = int(y.sum())
        block[f"mean_p_{h}d"] = float(p.mean())
        block[f"auc_{h}d"] = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else float("nan")
        block[f"brier_{h}d"] = float(brier_score_loss(y, p))
    return block


def run_npd_backtest(
    transactions: pd.DataFrame,
    calibration_end,
    holdout_end,
    training_horizon_days: int = DEFAULT_TRAINING_HORIZON_DAYS,
    aft: NPDModel | None = None,
) -> dict:
    """Backtest the three NPD models; returns ``{"models": {"naive", "btyd", "aft"}, ...}``.

    Each model block has ``customers``, ``buyers``, ``mae_days``, ``median_ae_days``,
    ``mae_days_given_purchase``, ``median_predicted_days`` and, for 30 and 90 days, ``auc``,
    ``brier``, ``positives`` and ``mean_p``. ``aft`` is an unfitted ``NPDModel`` to use
    (default: distribution and scale selected by validation).
    """
    calibration_end = pd.Timestamp(calibration_end).normalize()
    holdout_end = pd.Timestamp(holdout_end).normalize()
    if holdout_end <= calibration_end:
        raise ValueError("holdout_end must be after calibration_end")
    model = aft if aft is not None else NPDModel()
    horizons = tuple(model.horizons)

    conn = duckdb.connect(":memory:")
    try:
        load_staging(conn, transactions)
        cutoff = calibration_end.date()
        h = training_horizon_days
        training = features.build_training_frame(conn, cutoff, h)
        earlier = features.build_training_frame(conn, cutoff - timedelta(days=h), h)
        # each model also trains on the window a year before the one it predicts (season_window_end)
        season, before_season, before_that = season_frames(
            lambda end: features.build_training_frame(conn, end, h), cutoff, h)
        stacked, season_rows = with_season(training, season)
        earlier, _ = with_season(earlier, before_season)
        validation = season_validation(season, before_season, before_that)
        scoring = features.build_scoring_frame(conn, cutoff)
        gaps = gaps_after(conn, cutoff - timedelta(days=2 * h), cutoff)
        calendar = order_calendar_at(conn, cutoff)  # as customer_npd reads it
        validation_calendar = order_calendar_at(conn, cutoff - timedelta(days=h))
    finally:
        conn.close()
    feature_cols = usable_features(stacked, features.FEATURE_COLUMNS)
    try:
        model.fit(stacked, feature_cols)
        untrained = None
    except HistoryTooShort as error:
        # as ml/npd_model registers the fallback: a closed season's label window before a cutoff in its
        # closure holds no purchase at all, and the whole backtest used to stop there
        untrained = (f"history too short to train on the {h} days before {cutoff} (and the same window a year "
                     f"earlier): {error}")

    scoring["customer_id"] = scoring["customer_id"].astype(str)
    scoring = scoring.set_index("customer_id", drop=False)
    actual = holdout_days_to_next(transactions, calibration_end, holdout_end)
    actual_days = actual.reindex(scoring.index).to_numpy(dtype=float)

    naive = NaiveCadence(horizons=horizons).fit(scoring)
    summary = btyd.summarize(transactions, calibration_end)
    timing, timing_note = timing_fit(summary)
    summary_rows = summary.reindex(scoring.index).reset_index()
    window = float((holdout_end - calibration_end).days)
    predictions = {NAIVE: predict_on_calendar(naive, scoring, calibration_end, window, calendar)}
    if timing is not None:
        predictions[BTYD] = (predict_on_calendar(BTYDTiming(timing.transactions, horizons=horizons), summary_rows,
                                                 calibration_end, window, calendar, recency_col="recency", T_col="T")
                             .set_index(scoring.index))
    # the trained model is not: its label windows start a whole number of months before the cutoff (and a
    # year), so it learned when the store's order days fall (P(7 d) 0.0007 on the invoicing store); but
    # not a closed season longer than its windows (``trained_model_calendar``)
    if untrained is None:
        predictions[AFT] = predict_on_calendar(model, scoring, calibration_end, window,
                                               trained_model_calendar(calendar))
    blocks = {name: evaluate(actual_days, frame, horizons) for name, frame in predictions.items()}
    blocks[FALLBACK] = fallback_metrics(scoring.assign(days_to_next_purchase=actual_days), int(window),
                                        calendar=calendar)
    served = (served_on_history(earlier, training, cutoff, training_horizon_days, feature_cols, model, validation,
                                gaps, validation_calendar) if untrained is None else
              {"earned": False, "model": FALLBACK, "comparisons": [], "validation": None,
               "reason": f"{untrained}: serving the BTYD fallback"})
    served["metrics"] = blocks[AFT if served["earned"] else FALLBACK]
    column = f"p_purchase_{ALIVE_TEST_DAYS}d"
    return {
        # what production lowers the BTYD's p_alive with (served, and better beyond noise at 90 days)
        "alive_p_purchase": (predictions[AFT][column].set_axis(scoring.index)
                             if served["earned"] and served["validation"][AFT].get("alive_evidence")
                             and column in predictions[AFT] else None),
        # what the lifecycle stages read where the trained model is served (lifecycle.lifecycle_stages)
        "served_p_purchase": (predictions[AFT][column].set_axis(scoring.index)
                              if served["earned"] and column in predictions[AFT] else None),
        # the days of those 90 the trained model was read on (a closed season's open days), for the BTYD's
        "alive_window_days": alive_window_days(calendar),
        "calibration_end": calibration_end.date().isoformat(),
        "holdout_end": holdout_end.date().isoformat(),
        "training_window": {
            "feature_cutoff": (cutoff - timedelta(days=training_horizon_days)).isoformat(),
            "horizon_days": int(training_horizon_days),
            "rows": int(len(training)),
            "censored_share": float(training[features.LABEL_COLUMNS[-1]].isna().mean()),
            "season_feature_cutoff": (season_window_end(cutoff, h) - timedelta(days=h)).isoformat(),
            "season_rows": int(season_rows),
        },
        "aft": ({"untrained": untrained} if untrained is not None else {
            "distribution": model.distribution,
            "scale": model.scale,
            "rounds": model.n_rounds_,
            "features": feature_cols,
            "selection": model.selection_,
        }),
        "naive_population_interval_days": naive.population_interval_,
        "btyd_timing": timing_note,
        # the order days the BTYD curves (and the fallback) were read on: a regular rhythm's, else none
        "order_calendar": calendar.describe() if calendar is not None else None,
        "models": blocks,
        "served": served,
    }


TIMING_FAMILIES = (btyd.BGNBD, btyd.MBGNBD)
"""The BTYD timing baseline's families, in order: both are BetaGeoFitters, whose next-purchase
formulas (``BTYDTiming``) are exact; MBG/NBD where BG/NBD converges at no penalizer."""


def timing_fit(summary: pd.DataFrame) -> tuple[btyd.BTYDModel | None, dict]:
    """(the fit of the timing baseline, what was fitted and why). On a store where nobody churns the
    BG/NBD did not converge at any penalizer and the whole backtest exited with lifetimes' "The model
    did not converge"; the MBG/NBD fits there. Neither: no BTYD timing block, and the note says why."""
    failed = {}
    for family in TIMING_FAMILIES:
        try:
            model = btyd.fit_btyd(summary, family)
        except btyd.FIT_ERRORS as error:
            failed[family] = (str(error).strip() or type(error).__name__).splitlines()[0]
            continue
        reason = ("fitted" if not failed else
                  f"{' and '.join(failed)} did not converge at any penalizer ({'; '.join(failed.values())})")
        return model, {"family": family, "penalizer": model.penalizer, "reason": reason}
    return None, {"family": None, "reason": "no BTYD timing baseline: "
                  + "; ".join(f"{k} did not converge ({v})" for k, v in failed.items())}


def served_on_history(earlier: pd.DataFrame, latest: pd.DataFrame, cutoff, horizon: int, feature_cols: list[str],
                      chosen: NPDModel, season: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                      gaps: list[OrderGap] | None = None, calendar=None) -> dict:
    """Which next-purchase model ``ml/npd_model`` would serve at ``cutoff`` (its rule, on the same
    frames): the chosen AFT shape trained on ``earlier`` and scored on ``latest`` against the BTYD
    fallback fitted on ``latest``'s features. Returns ``earns_its_place``'s verdict with ``model``
    (``AFT`` or ``FALLBACK``) and the two validation blocks."""
    settings = {f.name: getattr(chosen, f.name) for f in dataclasses.fields(chosen) if f.init}
    trained_p, baseline_p = {}, {}
    check = time_split_backtest(earlier, cutoff, horizon, latest, feature_cols, chosen, settings, trained_p)
    baseline, why = baseline_on(latest, horizon, probabilities=baseline_p, calendar=calendar)
    check.update(alive_test(latest, trained_p, baseline_p, horizon))
    check.update(season_check(season, horizon, feature_cols, chosen, settings))
    candidate = {k: v for k, v in check.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    verdict = earns_its_place(candidate, baseline, why, check.get("skipped"), gaps)
    return {**verdict, "model": AFT if verdict["earned"] else FALLBACK,
            "validation": {AFT: candidate, FALLBACK: baseline}}


NPD_BASELINE = ModelRegressionSettings(margin=0.0, metrics={"auc_30d": "higher", "brier_30d": "lower"})
"""What a trained next-purchase model must show against the BTYD fallback on the same validation
window to be served: no worse AUC and no worse Brier score of P(purchase within 30 days), no margin.
The fallback needs no training and reads the served BTYD fit; a booster that cannot beat it has
not earned its place (on an Online Retail II-sized store it lost on every horizon)."""


def earns_its_place(candidate_metrics: dict, baseline: dict | None, why_no_baseline: str = "",
                    skipped: str | None = None, gaps: list[OrderGap] | None = None) -> dict:
    """Whether the trained model is served rather than the BTYD fallback (``NPD_BASELINE``).

    ``candidate_metrics``: the trained shape's out-of-sample metrics (trained at C - 2H, scored on
    the window (C - H, C]); ``baseline``: the fallback's on the same rows. A model that could not
    be checked out of sample (``skipped``: no earlier window to train on) has not earned its place;
    with no baseline to compare with, the trained model is the only one and is served. A model that
    loses on the latest window is still served when it predicted the coming season a year ago better
    beyond noise (``season_check``'s ``season_evidence`` in ``candidate_metrics``): the latest
    window of a seasonal store never holds the season the served model is about to predict.
    A model whose two windows (C - 2H, C] hold a stretch without orders the store's rate cannot
    explain (``gaps``, ``transforms.order_gaps.gaps_after``) has not earned its place either: it
    learned the missing days as customers who did not buy (the autumn-ramp store without two months
    served the AFT, whose holdout AUC and Brier at 30 days were behind the BTYD's, where the whole
    file serves the fallback). Returns ``{"earned", "reason", "comparisons"}``.
    """
    if gaps and baseline is not None:
        return {"earned": False, "comparisons": [],
                "reason": f"the trained model's windows hold {first_and_more(gaps)}: a model that learned "
                          "where orders are missing is not one to serve (a missing part of the export? "
                          "transforms.order_gaps): serving the BTYD fallback"}
    if baseline is None:
        return {"earned": True, "comparisons": [], "reason": f"served without a comparison: {why_no_baseline}"}
    comparisons = compare_runs({"metrics": candidate_metrics}, {"metrics": baseline}, NPD_BASELINE)
    if not comparisons:
        why = f" ({skipped})" if skipped else ""
        return {"earned": False, "comparisons": [],
                "reason": f"the trained model could not be checked out of sample{why}: serving the BTYD fallback"}
    summary = "; ".join(f"{c['metric']} {c['candidate']:.4g} vs BTYD {c['registered']:.4g}" for c in comparisons)
    gain = f"season_brier_{ALIVE_TEST_DAYS}d_gain_over_btyd"
    if any(c["regressed"] for c in comparisons) and candidate_metrics.get("season_evidence"):
        return {"earned": True, "comparisons": comparisons,
                "reason": f"the trained model does not beat the BTYD fallback on the latest window ({summary}), "
                          f"but it predicts the coming season of a year ago better beyond noise (Brier at "
                          f"{ALIVE_TEST_DAYS} days: gain {candidate_metrics[gain]:.4g}, SE {candidate_metrics[gain + '_se']:.4g}"
                          f", on {candidate_metrics.get('season_validation_rows', 0)} customers): serving it"}
    if any(c["regressed"] for c in comparisons):
        return {"earned": False, "comparisons": comparisons,
                "reason": f"the trained model does not beat the BTYD fallback on the validation window ({summary}): "
                          "serving the BTYD fallback"}
    return {"earned": True, "comparisons": comparisons,
            "reason": f"the trained model is no worse than the BTYD fallback on the validation window ({summary})"}


def trained_model_calendar(calendar):
    """The calendar a trained next-purchase model is read on: a closed season's (``RhythmCalendar.open_time``:
    closures of months, longer than its 90-day label windows, so it never saw one whole and would date a
    purchase in the closure: the winter store's, as of the season's last day, in February; benchmarks/MEASUREMENTS.md,
    session 53), else none (a short rhythm it learns from its windows)."""
    return calendar if calendar is not None and calendar.open_time else None


def alive_window_days(calendar) -> float:
    """The days of the next ``ALIVE_TEST_DAYS`` a trained next-purchase model's P(purchase) is read on
    (``trained_model_calendar`` of the store's ``calendar``): the open days of a store closed for a
    season, else all of them; the BTYD's P(purchase | alive) that lowers p_alive is read over as
    many (``clv.reconcile_alive_with``)."""
    calendar = trained_model_calendar(calendar)
    return float(ALIVE_TEST_DAYS) if calendar is None else float(calendar.effective_days(ALIVE_TEST_DAYS))


def order_calendar_at(conn, cutoff):
    """The store's order days after ``cutoff`` when it has a regular rhythm
    (``order_gaps.Stretches.calendar_ahead``, from the orders up to it), else None: what the served
    BTYD fallback reads its chances on (``npd.predict_on_calendar``). A closed season's is the one
    the CLV models read (``Stretches.season_calendar``), with this year's closure when it began early."""
    stretches = order_stretches(conn, until=cutoff)
    return stretches.season_calendar or stretches.calendar_ahead(cutoff)


def fallback_metrics(holdout: pd.DataFrame, horizon: int, pareto_start: dict | None = None,
                     probabilities: dict | None = None, calendar=None) -> dict:
    """AUC / Brier of the BTYD fallback on ``holdout`` (features at C - H, outcomes in (C - H, C]):
    the BTYD fitted on those features alone (``clv.fit_btyd_at``, the settings of clv.toml), so it
    is out of sample like the candidate it is compared with. ``pareto_start``: the served fit's
    Pareto/NBD parameters to start from, as the CLV training's window fits do (lifetimes' Pareto/NBD
    likelihood is slow to search from the fixed starts on some stores). ``probabilities`` as in
    ``time_split_backtest``. ``calendar``: a rhythm store's order days after the frame's cutoff
    (``npd.predict_on_calendar``)."""
    fit = clv.fit_btyd_at(holdout, clv.load_config(), pareto_start)
    model = BTYDNextPurchase(fit.transactions)
    recency_days, age_days = features.btyd_days(holdout)  # observed time, as the fit read them
    inputs = holdout.assign(recency_weeks=recency_days / 7.0, T_weeks=age_days / 7.0)
    predictions = (model.predict(inputs, within_days=horizon) if calendar is None  # dated from the feature_cutoff
                   else predict_on_calendar(model, inputs, calendar.cutoff, horizon, calendar))
    _keep_alive_test_probability(predictions, probabilities)
    return evaluate(holdout["days_to_next_purchase"].to_numpy(dtype=float), predictions, tuple(model.horizons))


def baseline_on(holdout: pd.DataFrame, horizon: int, pareto_start: dict | None = None,
                probabilities: dict | None = None, calendar=None) -> tuple[dict | None, str]:
    """(``fallback_metrics``, "") on ``holdout``, or (None, why) when no BTYD can be fitted on it;
    ``calendar``: the store's order days after the holdout's feature cutoff, as the fallback would
    have been served then (``order_calendar_at``)."""
    try:
        return fallback_metrics(holdout, horizon, pareto_start, probabilities, calendar), ""
    except (ValueError, KeyError, ArithmeticError) as error:
        return None, f"no BTYD baseline on this window ({type(error).__name__}: {error})"[:300]


ALIVE_TEST_DAYS = clv.ALIVE_EVIDENCE_DAYS
"""The horizon of ``paired_brier``: the next-purchase probability the served p_alive is reconciled
with (scores/customer_clv)."""

ALIVE_TEST_Z = 1.645
"""How many standard errors the trained model's Brier gain over the BTYD must reach before its
probabilities may lower the BTYD's p_alive: the bar the platform holds every "better than" to."""


def paired_brier(actual_days: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, window_days: int,
                 days: int = ALIVE_TEST_DAYS) -> dict:
    """The trained model's Brier gain over the BTYD fallback at ``days`` on the same customers:
    ``brier_{days}d_gain_over_btyd`` (baseline - candidate, per customer, averaged; > 0 = better),
    its standard error (``..._se``, paired) and ``alive_evidence`` (1 when the gain is beyond
    ``ALIVE_TEST_Z`` standard errors, else 0), stored with the model's metrics (ml.model_runs).

    Passing the registration (AUC and Brier at 30 days, no margin) says the model may serve dates and
    probabilities; lowering the BTYD's p_alive with them (``clv.reconcile_alive``) takes the minimum of
    two estimates, which is biased down where they only differ by noise: on CDNOW at 1998-02-28 it
    took the holdout total of expected purchases from -7.4 % to -13.5 %. So it needs the trained
    model to be better at that horizon beyond noise, as on a subscription store's cadence. Empty
    (no evidence) when the window of ``actual_days`` is shorter than ``days``: it does not know who
    bought by then (the backtest of a short file trains next purchase on a shorter window)."""
    if window_days < days:
        return {}
    actual = np.asarray(actual_days, dtype=float)
    y = (np.isfinite(actual) & (actual <= days)).astype(float)
    gain = (np.clip(baseline, 0, 1) - y) ** 2 - (np.clip(candidate, 0, 1) - y) ** 2
    gain = gain[np.isfinite(gain)]
    if gain.size < 2:
        return {}
    mean, se = float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(gain.size))
    return {f"brier_{days}d_gain_over_btyd": mean, f"brier_{days}d_gain_over_btyd_se": se,
            "alive_evidence": int(mean > ALIVE_TEST_Z * se)}


def _keep_alive_test_probability(predictions: pd.DataFrame, probabilities: dict | None) -> None:
    """Put the holdout's P(purchase within ``ALIVE_TEST_DAYS``) into ``probabilities`` (when given)."""
    column = f"p_purchase_{ALIVE_TEST_DAYS}d"
    if probabilities is not None and column in predictions:
        probabilities[ALIVE_TEST_DAYS] = predictions[column].to_numpy(dtype=float)


def alive_test(holdout: pd.DataFrame, trained: dict, baseline: dict, horizon: int) -> dict:
    """``paired_brier`` of the probabilities ``time_split_backtest`` and ``fallback_metrics`` kept for
    ``holdout`` (a window of ``horizon`` days); empty when either is missing."""
    if ALIVE_TEST_DAYS not in trained or ALIVE_TEST_DAYS not in baseline:
        return {}
    return paired_brier(holdout["days_to_next_purchase"].to_numpy(dtype=float), trained[ALIVE_TEST_DAYS],
                        baseline[ALIVE_TEST_DAYS], horizon)


def time_split_backtest(earlier: pd.DataFrame, cutoff, horizon: int, holdout: pd.DataFrame, features: list[str],
                        chosen: NPDModel, settings: dict, probabilities: dict | None = None) -> dict:
    """Out-of-time check shown in the UI: the chosen model shape trained one window earlier
    (``earlier``: features at C − 2H, labels in (C − 2H, C − H]) and scored on the latest window
    (``holdout``: features at C − H, outcomes in (C − H, C]): MAE in days for buyers, AUC and Brier
    at 30/90 days. ``probabilities`` (a dict) receives P(purchase within ``ALIVE_TEST_DAYS``) of the
    holdout rows, for ``paired_brier``.
    """
    try:
        model = _refit(chosen, settings, earlier, features)
    except ValueError as exc:  # too little history for a second window
        return {"skipped": str(exc)}
    predictions = model.predict(holdout, within_days=horizon)
    _keep_alive_test_probability(predictions, probabilities)
    actual = holdout["days_to_next_purchase"].to_numpy(dtype=float)
    result = evaluate(actual, predictions, tuple(model.horizons))
    result["train_window_end"] = str(cutoff - timedelta(days=horizon))
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in result.items()}
