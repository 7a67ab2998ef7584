"""Next-purchase-date backtest: naive cadence vs BG/NBD timing vs XGBoost AFT on a holdout.

Protocol (nothing after ``calibration_end`` C is used to fit anything):

* AFT training rows: features at C - H from orders <= C - H, label = days from C - H to the
  next purchase in (C - H, C], right-censored at H when there is none
  (``features.build_training_frame(conn, C, H)``).
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

Caveat on ``mae_days``: it is measured on holdout buyers only, whose actual times are at most
the holdout length L, so it favours models that predict short times (the unconditional median
of a customer who probably never returns is years away). ``mae_days_given_purchase`` scores
each model's median time *given a purchase within L* instead, the like-for-like point
prediction for that subset. Read both next to the probability metrics, which cover everyone.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from clv_platform.models import btyd, metrics
from clv_platform.models.frames import load_staging, usable_features
from clv_platform.models.npd import BTYDTiming, NaiveCadence, NPDModel
from clv_platform.transforms import features

NAIVE = "naive"
BTYD = "btyd"
AFT = "aft"
DEFAULT_TRAINING_HORIZON_DAYS = 90
"""Label window of the AFT training rows. 90 days keeps the training snapshot (C - 90) close to
the scoring population's tenure and covers both probability horizons inside the window; longer
times are extrapolated by the fitted distribution."""

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
        training = features.build_training_frame(conn, cutoff, training_horizon_days)
        scoring = features.build_scoring_frame(conn, cutoff)
    finally:
        conn.close()
    feature_cols = usable_features(training, features.FEATURE_COLUMNS)
    model.fit(training, feature_cols)

    scoring["customer_id"] = scoring["customer_id"].astype(str)
    scoring = scoring.set_index("customer_id", drop=False)
    actual = holdout_days_to_next(transactions, calibration_end, holdout_end)
    actual_days = actual.reindex(scoring.index).to_numpy(dtype=float)

    naive = NaiveCadence(horizons=horizons).fit(scoring)
    summary = btyd.summarize(transactions, calibration_end)
    bgnbd = btyd.fit_btyd(summary, btyd.BGNBD)
    summary_rows = summary.reindex(scoring.index).reset_index()
    window = float((holdout_end - calibration_end).days)
    predictions = {
        NAIVE: naive.predict(scoring, cutoff=calibration_end, within_days=window),
        BTYD: BTYDTiming(bgnbd.transactions, horizons=horizons)
        .predict(summary_rows, recency_col="recency", T_col="T", cutoff=calibration_end, within_days=window)
        .set_index(scoring.index),
        AFT: model.predict(scoring, cutoff=calibration_end, within_days=window),
    }
    return {
        "calibration_end": calibration_end.date().isoformat(),
        "holdout_end": holdout_end.date().isoformat(),
        "training_window": {
            "feature_cutoff": (cutoff - timedelta(days=training_horizon_days)).isoformat(),
            "horizon_days": int(training_horizon_days),
            "rows": int(len(training)),
            "censored_share": float(training[features.LABEL_COLUMNS[-1]].isna().mean()),
        },
        "aft": {
            "distribution": model.distribution,
            "scale": model.scale,
            "rounds": model.n_rounds_,
            "features": feature_cols,
            "selection": model.selection_,
        },
        "naive_population_interval_days": naive.population_interval_,
        "models": {name: evaluate(actual_days, frame, horizons) for name, frame in predictions.items()},
    }
