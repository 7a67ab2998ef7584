"""Scoring at the cutoff: the scoring frame (features + BTYD over h and H), ``ml.btyd_scores``
rows, per-customer predicted spend / CLV with P10-P90, discounting and CLV tiers.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from clv_platform.models import btyd, btyd_intervals
from clv_platform.transforms.features import btyd_days, build_scoring_frame
from clv_platform.models.clv.config import ClvConfig
from clv_platform.models.clv.windows import add_derived_features, btyd_summary, fit_btyd_at, btyd_features_horizons
from clv_platform.models.clv.booster import ClvModel
from clv_platform.models.clv.objective import P_BUY_HORIZON, P_BUY_LABEL, POSITIVE_COLUMNS


# Bands of the CLV ranking named for the ranks they hold (a "Top 5%" label on ranks 1-5 % would
# read as cumulative): (label, upper share of n). Stated in data_contract.toml and the README.
TIERS = (("Top 1%", 0.01), ("1-5%", 0.05), ("5-10%", 0.10), ("10-25%", 0.25))


REST = "Rest"


def scoring_frame(
    conn: duckdb.DuckDBPyConnection,
    cutoff: date,
    config: ClvConfig,
    model: btyd.BTYDModel | None = None,
    features: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, btyd.BTYDModel]:
    """Features at C plus BTYD features (over h) and the BTYD quantities over the horizon H.

    Adds ``btyd_horizon_ratio`` = E[X(H)] / E[X(h)] (1 where E[X(h)] = 0), ``btyd_p_alive`` and
    ``btyd_*_horizon`` columns (purchases, spend, discounted CLV over H) used for scores.
    """
    frame = build_scoring_frame(conn, cutoff) if features is None else features.reset_index(drop=True)
    frame = add_derived_features(frame)
    model = model or fit_btyd_at(frame, config)
    h_weeks = config.label_horizon_days / btyd.DAYS_PER_WEEK
    H_weeks = config.horizon_days / btyd.DAYS_PER_WEEK
    short, long = btyd_features_horizons(model, frame, [h_weeks, H_weeks], config.annual_discount_rate)
    ratio = np.where(short["btyd_expected_purchases"] > 0,
                     long["btyd_expected_purchases"] / short["btyd_expected_purchases"].where(
                         short["btyd_expected_purchases"] > 0, 1.0),
                     H_weeks / h_weeks)
    out = frame.join(short).assign(
        btyd_horizon_ratio=ratio,
        btyd_expected_purchases_horizon=long["btyd_expected_purchases"],
        btyd_expected_spend_horizon=long["btyd_expected_spend"],
        btyd_clv_horizon=long["btyd_clv"],
    )
    return out, model


BTYD_SCORE_COLUMNS = {
    "btyd_p_alive": "p_alive",
    "btyd_expected_purchases_horizon": "expected_purchases",
    "btyd_expected_aov": "expected_aov",
    "btyd_expected_spend_horizon": "expected_spend",
    "btyd_clv_horizon": "clv",
    "btyd_expected_purchases": "expected_purchases_label_window",
    "btyd_expected_spend": "expected_spend_label_window",
    "btyd_clv": "clv_label_window",
    "btyd_horizon_ratio": "horizon_ratio",
}
"""``scoring_frame`` column -> ``ml.btyd_scores`` column: the table keeps both horizons so the
scores asset rebuilds the hybrid's inputs from it without refitting the BTYD."""


def btyd_scores_table(frame: pd.DataFrame, model: btyd.BTYDModel, config: ClvConfig, cutoff: date,
                      seed: int = 0, chunk: int = 20000,
                      intervals: btyd_intervals.IntervalTable | None = None) -> pd.DataFrame:
    """Rows of ``ml.btyd_scores`` from a ``scoring_frame``: one per customer.

    The interval ratios come from ``intervals`` (drawn once for the whole store's interval keys,
    ``btyd_intervals``), or, without it, from a table drawn here for this frame's keys (seed
    ``seed``, ``chunk`` keys per draw)."""
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype(str).to_numpy()})
    out["cutoff"] = pd.Timestamp(cutoff).date()
    out["btyd_model"] = model.model
    out["horizon_days"] = config.horizon_days
    out["label_horizon_days"] = config.label_horizon_days
    out["frequency"] = frame["frequency"].to_numpy()
    recency_days, age_days = btyd_days(frame)  # observed time, as the fit read them
    out["recency_weeks"] = recency_days / btyd.DAYS_PER_WEEK
    out["T_weeks"] = age_days / btyd.DAYS_PER_WEEK
    out["monetary"] = frame["monetary"].to_numpy(dtype=float)
    for source, target in BTYD_SCORE_COLUMNS.items():
        out[target] = frame[source].to_numpy(dtype=float)
    codes = btyd_intervals.frame_keys(frame)
    if intervals is None:
        intervals = btyd_intervals.interval_table(model, codes, config.horizon_days / btyd.DAYS_PER_WEEK,
                                                  seed=seed, chunk=chunk)
    low, median, high = intervals.lookup(codes)
    mean = out["expected_spend"].to_numpy(dtype=float)
    # P10 / P50 / P90 of the predictive spend as multiples of its mean: scores apply them to any
    # model's mean (the interval, and the median point rule)
    out["spend_p10_ratio"] = np.where(mean > 0, low, 0.0)
    out["spend_p90_ratio"] = np.where(mean > 0, high, 0.0)
    out["spend_p50_ratio"] = np.where(mean > 0, median, 0.0)
    if intervals.p_buy is not None and intervals.positive_ratios is not None:
        # the mixture median point rule's BTYD inputs (objective.mixture_median): P(any spend over the
        # horizon), P(any purchase over the label window) and the positive-part quantile ratios
        p_horizon, p_label, positive = intervals.lookup_mixture(codes)
        out[P_BUY_HORIZON] = p_horizon
        out[P_BUY_LABEL] = p_label
        for j, column in enumerate(POSITIVE_COLUMNS):
            out[column] = positive[:, j]
    elif intervals.p_buy is not None:
        # drawn without the mixture inputs (the served model does not read them): the same columns,
        # null, so the table keeps one schema whichever model is served
        out[P_BUY_HORIZON] = intervals.p_buy[intervals.positions(codes)]
        out[P_BUY_LABEL] = np.nan
        for column in POSITIVE_COLUMNS:
            out[column] = np.nan
    return out


INTERVAL_COLUMNS = ["spend_p10_ratio", "spend_p90_ratio"]
"""Columns of ``ml.btyd_scores``: the 10th / 90th percentile of the customer's predictive spend
over the horizon divided by its mean (BTYD draws: alive, rate, dropout, Gamma-Gamma spend)."""


MEDIAN_COLUMN = "spend_p50_ratio"
"""Column of ``ml.btyd_scores``: the median of the same draws divided by the mean, for the median
point rule (``objective.median_point``)."""


MIXTURE_COLUMNS = (P_BUY_HORIZON, P_BUY_LABEL, *POSITIVE_COLUMNS)
"""Columns of ``ml.btyd_scores`` the mixture median point rule reads (``ClvModel.mixture_inputs``)."""


def frame_from_tables(features: pd.DataFrame, btyd_scores: pd.DataFrame) -> pd.DataFrame:
    """A ``scoring_frame`` rebuilt from ``features.customer_features`` and ``ml.btyd_scores``."""
    renamed = btyd_scores.rename(columns={v: k for k, v in BTYD_SCORE_COLUMNS.items()})
    keep = ["customer_id", *BTYD_SCORE_COLUMNS, *[c for c in (*INTERVAL_COLUMNS, MEDIAN_COLUMN, *MIXTURE_COLUMNS)
                                                  if c in renamed]]
    frame = features.assign(customer_id=features["customer_id"].astype(str))
    merged = frame.merge(renamed[keep].assign(customer_id=renamed["customer_id"].astype(str)),
                         on="customer_id", how="left", validate="one_to_one")
    return add_derived_features(merged.sort_values("customer_id", kind="stable").reset_index(drop=True))


def discount_factor(frame: pd.DataFrame, config: ClvConfig) -> np.ndarray:
    """Per-customer PV factor of spend over H: BTYD's discounted / undiscounted expected spend.

    It weights the discounting by when the BTYD expects the purchases (early for a likely churner);
    for a customer with no expected spend the factor of a spend rate flat over H is used.
    """
    weeks = np.arange(1.0, config.horizon_days / btyd.DAYS_PER_WEEK + 1e-9)
    flat = float(np.mean((1.0 + config.annual_discount_rate) ** (-(weeks / btyd.WEEKS_PER_YEAR)))) if weeks.size else 1.0
    spend = frame["btyd_expected_spend_horizon"].to_numpy(dtype=float)
    clv = frame["btyd_clv_horizon"].to_numpy(dtype=float)
    return np.where(spend > 0, clv / np.where(spend > 0, spend, 1.0), flat)


def predict_scores(trained: ClvModel, frame: pd.DataFrame, config: ClvConfig) -> pd.DataFrame:
    """Per-customer predicted spend and discounted CLV over the horizon from a ``scoring_frame``.

    ``predicted_spend`` / ``predicted_clv`` are conditional means (what sums, tiers and the revenue
    forecast use); ``predicted_clv_point`` is the served per-customer point forecast, the model's
    point rule (``ClvModel.point``): the total-preserving sharpening of ``predicted_clv`` over this
    frame (same ranking and sum; ``frame`` must then hold the whole scored population, the scores
    asset recomputes it in SQL over the table), the predictive median ``predicted_clv`` x
    ``spend_p50_ratio`` (per customer) or the mixture median (per customer: the model's buy
    classifier on this frame, carried to the horizon by the BTYD's P(buy) columns).
    """
    spend = trained.predict(frame, config.horizon_days, frame["btyd_horizon_ratio"].to_numpy())
    clv_values = spend * discount_factor(frame, config)
    p50 = frame[MEDIAN_COLUMN].fillna(0.0).to_numpy(dtype=float) if MEDIAN_COLUMN in frame else None
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "predicted_spend": spend,
            "predicted_clv": clv_values,
            # a shrunk median point needs the BTYD's CLV (same discounting) as the level it shrinks to
            "predicted_clv_point": trained.point(clv_values, config.horizon_days, p50,
                                                 frame["btyd_clv_horizon"].to_numpy(dtype=float), frame),
            "p_alive": frame["btyd_p_alive"].to_numpy(),
            "expected_purchases": frame["btyd_expected_purchases_horizon"].to_numpy(),
            **interval_columns(clv_values, frame),
        }
    )


ALIVE_EVIDENCE_DAYS = 90
"""The served next-purchase probability the served p_alive is reconciled with (scores.customer_npd
.p_purchase_90d): the longest of its windows, where a regular buyer's silence shows most."""


def reconcile_alive(p_alive, expected_purchases, p_purchase, p_purchase_if_alive) -> tuple[np.ndarray, np.ndarray]:
    """(p_alive, expected_purchases) of the BTYD, lowered where the served next-purchase model says
    the customer buys less than an alive customer would.

    A customer who has left buys nothing, so in any model P(purchase within w) = P(alive) x
    P(purchase within w | alive). The BTYD assumes memoryless purchasing, under which silence says
    little: a subscriber 80 days past a 30-day cadence keeps p_alive 0.6. Where the next-purchase
    model that beat the BTYD's own timing on the latest window is served (``alive_evidence``), its
    ``p_purchase`` over the BTYD's ``p_purchase_if_alive`` (``TransactionModel.purchase_within_if_alive``)
    is what being alive can still explain, and p_alive is the smaller of the two. Only lowered: a
    customer the next-purchase model expects to buy more often than the BTYD's alive customer keeps
    the BTYD's p_alive (that ratio reads the two models' rates, not survival). Expected purchases
    are P(alive) x E[X | alive] in every BTYD family, so they scale with p_alive. A missing
    probability (NaN, or a customer the BTYD gives no chance to buy even alive) leaves both as they are.
    """
    alive = np.asarray(p_alive, dtype=float)
    purchases = np.asarray(expected_purchases, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.clip(np.asarray(p_purchase, dtype=float) / np.asarray(p_purchase_if_alive, dtype=float), 0.0, 1.0)
        usable = np.isfinite(implied) & (np.asarray(p_purchase_if_alive, dtype=float) > 0) & np.isfinite(alive)
        lowered = usable & (implied < alive)
        served = np.where(lowered, implied, alive)
        scaled = np.where(lowered & (alive > 0), purchases * served / np.where(alive > 0, alive, 1.0), purchases)
    return served, scaled


SPEND_COLUMNS = ("predicted_spend", "predicted_clv", "predicted_clv_point", "predicted_clv_p10", "predicted_clv_p90")
"""The per-customer money columns of ``predict_scores``: what a served BTYD's reconciled p_alive scales."""


def alive_scale(btyd_alive, served_alive) -> np.ndarray:
    """served / BTYD p_alive per customer, 1 where the BTYD's is 0 or not a number: the factor by
    which ``reconcile_alive`` lowered a customer's expected purchases, which a served BTYD's spend
    (P(alive) x E[spend | alive]) takes too."""
    before = np.asarray(btyd_alive, dtype=float)
    after = np.asarray(served_alive, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = after / before
    return np.where(np.isfinite(ratio) & (before > 0), np.clip(ratio, 0.0, 1.0), 1.0)


def reconcile_alive_with(transactions, p_alive, expected_purchases, p_purchase, frequency,
                         T_weeks, window_days: float = ALIVE_EVIDENCE_DAYS) -> tuple[np.ndarray, np.ndarray]:
    """``reconcile_alive`` with the BTYD ``transactions`` model's P(purchase within
    ``ALIVE_EVIDENCE_DAYS`` | alive) of customers with ``frequency`` repeat purchases at age ``T_weeks``
    (``TransactionModel.purchase_within_if_alive``): what the scores and the backtest both serve.
    ``window_days``: the BTYD's days in those 90 (a store closed for a season: the open days the
    next-purchase model was read on, ``npd_backtest.trained_model_calendar``; none open, no evidence)."""
    if_alive = transactions.purchase_within_if_alive(float(window_days) / btyd.DAYS_PER_WEEK,
                                                     np.asarray(frequency, dtype=float),
                                                     np.asarray(T_weeks, dtype=float))
    return reconcile_alive(p_alive, expected_purchases, p_purchase, if_alive)


def interval_columns(clv_values: np.ndarray, frame: pd.DataFrame) -> dict:
    """``predicted_clv_p10`` / ``_p90``: the model's CLV times the BTYD predictive quantile ratios
    (the BTYD's shape - zero-inflation and spread - around this model's mean); empty without them."""
    if not set(INTERVAL_COLUMNS) <= set(frame.columns):
        return {}
    return {
        "predicted_clv_p10": clv_values * frame["spend_p10_ratio"].fillna(0.0).to_numpy(dtype=float),
        "predicted_clv_p90": clv_values * frame["spend_p90_ratio"].fillna(0.0).to_numpy(dtype=float),
    }


def assign_tiers(scores: pd.DataFrame, value: str = "predicted_clv") -> pd.DataFrame:
    """Add ``clv_rank`` (1 = highest), ``clv_percentile`` and ``clv_tier``.

    Ties are broken by customer_id so the ranking is deterministic. ``clv_percentile`` =
    100 * (n - rank + 1) / n: the share of customers ranked at or below this one (100 for the
    best). The tier is the first band of ``TIERS`` whose upper share x has rank <= x * n, else
    ``Rest``; in a base smaller than 100 customers "Top 1%" is therefore empty rather than rounded up.
    A customer predicted to spend nothing (0, or no prediction) is ``Rest`` whatever the rank: in a
    store where few customers have a positive forecast (nobody came back yet), the top bands of
    ranks would otherwise hold zeros ordered by id, and the write-back tag them `clv:top-5`.
    """
    n = len(scores)
    order = scores.sort_values([value, "customer_id"], ascending=[False, True], kind="stable").index
    rank = pd.Series(np.arange(1, n + 1), index=order).reindex(scores.index)
    out = scores.assign(clv_rank=rank.astype("int64"), clv_percentile=100.0 * (n - rank + 1) / max(n, 1))
    tier = np.full(n, REST, dtype=object)
    for label, share in reversed(TIERS):
        tier[rank.to_numpy() <= share * n] = label
    tier[~(scores[value].to_numpy(dtype=float) > 0)] = REST
    out["clv_tier"] = tier
    return out
