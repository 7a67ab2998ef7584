"""Next purchase date (NPD): when will each customer buy again, and will they within 30 / 90 days?

The label is the number of days from a cutoff to the customer's next purchase. It is only
observed for customers who bought again inside the label window; everybody else is
RIGHT-CENSORED at the window end: we know their time is *longer* than the window, not that it
is the window. Treating those customers as events at the window end, or dropping them, biases
every prediction short (the test suite shows both failure modes against a known answer).

Three models share one output shape (``days_to_next``, ``predicted_next_purchase_date``,
``p_purchase_{h}d`` for each horizon h, and with ``within_days=L`` also
``days_to_next_given_purchase``, the median time given a purchase within L - the point
prediction to compare with the customers who did buy in a window of length L):

* ``NPDModel``: XGBoost with ``objective="survival:aft"`` (accelerated failure time). The model
  is ``ln T = f(x) + sigma * Z``; labels are intervals ``[label_lower_bound, label_upper_bound]``
  = ``[d, d]`` for an observed next purchase after d days and ``[H, +inf)`` for a customer
  censored at the window length H. ``Z`` is normal, logistic or extreme-value
  (``aft_loss_distribution``) and ``sigma`` is ``aft_loss_distribution_scale``. Both are picked
  by validation negative log-likelihood (a proper density of T, so comparable across
  distributions and scales) on a held-out share of the training rows, unless fixed. The
  extreme-value choice makes T Weibull with shape 1/sigma (sigma = 1: exponential), the natural
  family for inter-purchase times; normal / logistic make T log-normal / log-logistic.
  ``P(T <= t) = F((ln t - ln yhat) / sigma)`` with ``yhat = exp(f(x))`` the booster's prediction.
  ``days_to_next`` is the *median* of that distribution: the mean of a log-logistic with
  sigma >= 1 is infinite and a median is what "the date we expect" means to a marketer.
  On CDNOW (full file, 90-day label window ending 1997-09-30, 82% censored) validation picks
  logistic with sigma = 1.0, with extreme-value sigma = 1.0 a close second and every normal
  noticeably worse: purchase gaps have a heavier right tail than a log-normal.
* ``BTYDTiming``: timing implied by a fitted BG/NBD. In BG/NBD a customer can only drop out
  right after a purchase, so an alive customer's next purchase is exactly Poisson(lambda) in
  time, and ``lambda | data, alive ~ Gamma(r + x, alpha + T)``; hence
  ``P(purchase within t) = P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))``.
* ``BTYDNextPurchase``: the same curve for whichever BTYD family ``ml/btyd_scores`` serves
  (Pareto/NBD too), read off the served fit: the model ``ml/npd_model`` registers when the history
  is too short to train the AFT model (``HistoryTooShort``).
* ``NaiveCadence``: "last order + mean inter-purchase interval" (the pooled population interval
  for one-time buyers), with an exponential of that mean for the probabilities.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit, logit, ndtr, ndtri

NORMAL = "normal"
LOGISTIC = "logistic"
EXTREME = "extreme"
DISTRIBUTIONS = (NORMAL, LOGISTIC, EXTREME)

DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)
DEFAULT_HORIZONS = (7, 30, 90)
DURATION_COLUMN = "days_to_next_purchase"
MAX_DATE_DAYS = 36_500
"""Predicted times beyond a century get no date (NaT) rather than overflowing the timestamp."""


MIN_TRAINING_ROWS = 10
"""Rows (customers with features at C - H) below which the AFT model is not trained."""


class HistoryTooShort(ValueError):
    """The label window has too few customers (``MIN_TRAINING_ROWS``) or no observed next purchase to
    train the AFT model on: a store of a few weeks, or one where nobody bought twice. Raised in one
    place (``NPDModel.fit``); ``ml/npd_model`` then registers the BTYD fallback
    (``BTYDNextPurchase``) instead of failing. A ValueError, so callers that do not fall back see
    the error they always saw."""


def aft_cdf(t, predicted_time, distribution: str, scale: float) -> np.ndarray:
    """P(T <= t) under ``ln T = ln(predicted_time) + scale * Z`` (xgboost's AFT parameterization).

    The extreme-value CDF is ``1 - exp(-exp(z))`` (minimum Gumbel), as in xgboost's
    ``ExtremeDistribution``, which makes T Weibull.
    """
    t = np.asarray(t, dtype=float)
    z = (np.log(t) - np.log(np.asarray(predicted_time, dtype=float))) / scale
    if distribution == NORMAL:
        return ndtr(z)
    if distribution == LOGISTIC:
        return expit(z)
    if distribution == EXTREME:
        return -np.expm1(-np.exp(np.minimum(z, 700.0)))
    raise ValueError(f"unknown AFT distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def aft_quantile(q, predicted_time, distribution: str, scale: float) -> np.ndarray:
    """The q-quantile of T: ``predicted_time * exp(scale * F^-1(q))``."""
    q = np.asarray(q, dtype=float)
    if distribution == NORMAL:
        z = ndtri(q)
    elif distribution == LOGISTIC:
        z = logit(q)
    elif distribution == EXTREME:
        z = np.log(-np.log1p(-q))
    else:
        raise ValueError(f"unknown AFT distribution {distribution!r}; expected one of {DISTRIBUTIONS}")
    return np.asarray(predicted_time, dtype=float) * np.exp(scale * z)


def aft_median(predicted_time, distribution: str, scale: float) -> np.ndarray:
    """Median of T (``predicted_time`` itself for the symmetric noises, x (ln 2)^scale for extreme)."""
    return aft_quantile(0.5, predicted_time, distribution, scale)


def survival_bounds(duration, horizon_days) -> tuple[np.ndarray, np.ndarray]:
    """AFT label bounds: ``[d, d]`` for an observed duration, ``[H, +inf)`` when it is missing.

    A missing duration means "no purchase in the label window", i.e. right-censored at the
    window length H (a scalar or one value per row).
    """
    duration = np.asarray(pd.to_numeric(pd.Series(duration), errors="coerce"), dtype=float)
    horizon = np.broadcast_to(np.asarray(horizon_days, dtype=float), duration.shape)
    observed = np.isfinite(duration)
    if np.any(duration[observed] <= 0):
        raise ValueError("observed durations must be positive (days after the cutoff)")
    if np.any(observed & (duration > horizon)):
        raise ValueError("an observed duration exceeds the label window")
    lower = np.where(observed, duration, horizon)
    upper = np.where(observed, duration, np.inf)
    return lower, upper


def _as_matrix(frame: pd.DataFrame, feature_cols: list[str]) -> np.ndarray:
    """Features as float64 with NaN for nulls (xgboost learns a direction for missing values).

    Only a column that is not numeric already goes through ``pd.to_numeric`` (column by column, it
    cost 0.4 s of the 1M-customer nightly's next-purchase scoring on columns that were all numeric)."""
    block = frame[list(feature_cols)]
    other = [c for c, kind in block.dtypes.items() if not pd.api.types.is_numeric_dtype(kind)]
    if other:
        block = block.assign(**{c: pd.to_numeric(block[c], errors="coerce") for c in other})
    return block.astype("float64").to_numpy()


def _cutoff_series(frame: pd.DataFrame, cutoff) -> pd.Series:
    if cutoff is not None:
        return pd.Series(pd.Timestamp(cutoff).normalize(), index=frame.index)
    if "feature_cutoff" in frame:
        return pd.to_datetime(frame["feature_cutoff"]).dt.normalize()
    raise ValueError("pass cutoff= or provide a feature_cutoff column to date the predictions")


def _whole_days(days: np.ndarray) -> np.ndarray:
    """Whole day counts (NaN: none) as timedelta64[ns] (NaT). ``pd.to_timedelta`` of a float array
    converts value by value: 0.7 s of the 1M-customer nightly's next-purchase scoring for two
    columns of whole days. The same values; a count beyond ``MAX_DATE_DAYS`` (or infinite) still goes
    through it, which raises, as before, where nanoseconds end."""
    days = np.asarray(days, dtype=float)
    known = ~np.isnan(days)
    if np.any(np.abs(days[known]) > MAX_DATE_DAYS):
        return pd.to_timedelta(days, unit="D").to_numpy()
    out = np.full(days.shape, np.timedelta64("NaT"), dtype="m8[ns]")
    out[known] = days[known].astype("int64") * np.timedelta64(1, "D")
    return out


def prediction_frame(
    frame: pd.DataFrame,
    days_to_next: np.ndarray,
    probabilities: dict[int, np.ndarray],
    cutoff=None,
    given_purchase: np.ndarray | None = None,
) -> pd.DataFrame:
    """The common NPD output: days, date (cutoff + whole days, NaT beyond a century), P(T <= h).

    ``given_purchase`` (optional) is the median days *given a purchase within a window*, the
    point prediction to compare with the actual times of the customers who did buy in it.
    """
    days = np.asarray(days_to_next, dtype=float)
    dated = np.where(np.isfinite(days) & (days <= MAX_DATE_DAYS), np.round(days), np.nan)
    out = pd.DataFrame(index=frame.index)
    if "customer_id" in frame:
        out["customer_id"] = frame["customer_id"].to_numpy()
    out["days_to_next"] = days
    out["predicted_next_purchase_date"] = _cutoff_series(frame, cutoff) + _whole_days(dated)
    for horizon, values in probabilities.items():
        out[f"p_purchase_{horizon}d"] = np.asarray(values, dtype=float)
    if given_purchase is not None:
        out["days_to_next_given_purchase"] = np.asarray(given_purchase, dtype=float)
    return out


def predict_on_calendar(model, frame: pd.DataFrame, cutoff, within_days: float | None = None, calendar=None,
                        **kwargs) -> pd.DataFrame:
    """``model.predict`` (any next-purchase model with ``horizons``), read on a rhythm store's own
    clock when ``calendar`` (``transforms.order_gaps.RhythmCalendar``, of this cutoff) is given: each
    horizon's probability is the model's at the horizon's length in the store's order days
    (``effective_days``), and the days to the next purchase are mapped back to calendar days, onto an
    order day (``calendar_days``). Without a calendar, ``model.predict`` as it is."""
    if calendar is None:
        return model.predict(frame, cutoff=cutoff, within_days=within_days, **kwargs)
    if pd.Timestamp(cutoff).date() != calendar.cutoff:
        raise ValueError(f"the order calendar is of {calendar.cutoff}, the predictions of {cutoff}")
    horizons = tuple(model.horizons)
    # a horizon without an order day has no chance: read just above 0, where every curve is 0 (log 0 warns)
    on_clock = {h: max(float(calendar.effective_days(h)), 1e-9) for h in horizons}
    scorer = copy.copy(model)  # horizons are only read-outs of the fitted curve
    scorer.horizons = tuple(dict.fromkeys(on_clock.values()))
    window = None if within_days is None else max(float(calendar.effective_days(within_days)), 1e-9)
    read = scorer.predict(frame, cutoff=cutoff, within_days=window, **kwargs)
    given = (calendar.calendar_days(read["days_to_next_given_purchase"].to_numpy(dtype=float))
             if "days_to_next_given_purchase" in read else None)
    out = prediction_frame(frame, calendar.calendar_days(read["days_to_next"].to_numpy(dtype=float)),
                           {h: read[f"p_purchase_{on_clock[h]}d"].to_numpy() for h in horizons}, cutoff, given)
    for column in read.columns.difference(out.columns):
        if not column.startswith("p_purchase_"):
            out[column] = read[column].to_numpy()
    return out


DATE_WINDOW_DAYS = 90
DATE_MIN_PROBABILITY = 0.25


def next_purchase_contract(
    predictions: pd.DataFrame, cutoff, window_days: int = DATE_WINDOW_DAYS,
    min_probability: float = DATE_MIN_PROBABILITY,
) -> pd.DataFrame:
    """The served next-purchase columns, which agree with each other by construction.

    ``predictions`` is ``NPDModel.predict(..., within_days=window_days)`` (it must hold
    ``days_to_next_given_purchase`` and ``p_purchase_{window_days}d``). Contract:

    * ``p_purchase_{h}d``: P(next purchase within h days of the cutoff), for every model horizon;
    * ``days_to_next_purchase``: the median time to the next purchase *given that it happens within
      ``window_days``* - the date a marketer can act on - shown only when
      P(purchase within ``window_days``) >= ``min_probability``, else null;
    * ``predicted_next_purchase_date`` = cutoff + ceil(days) (a purchase at 6.2 days is on day 7).

    So a date within k days of the cutoff (k <= window) means exactly
    P(k days) >= P(window) / 2 and P(window) >= ``min_probability``.
    """
    window_column = f"p_purchase_{int(window_days)}d"
    if window_column not in predictions or "days_to_next_given_purchase" not in predictions:
        raise ValueError(f"predictions need {window_column} and days_to_next_given_purchase (predict(within_days=...))")
    shown = predictions[window_column].to_numpy(dtype=float) >= min_probability
    days = np.where(shown, predictions["days_to_next_given_purchase"].to_numpy(dtype=float), np.nan)
    whole = np.ceil(np.clip(days, 1e-9, None))
    out = pd.DataFrame(index=predictions.index)
    if "customer_id" in predictions:
        out["customer_id"] = predictions["customer_id"].to_numpy()
    out["days_to_next_purchase"] = days
    out["predicted_next_purchase_date"] = (pd.Series(pd.Timestamp(cutoff).normalize(), index=predictions.index)
                                           + _whole_days(whole))
    for column in [c for c in predictions.columns if c.startswith("p_purchase_")]:
        out[column] = predictions[column].to_numpy(dtype=float)
    return out


def infer_horizon_days(frame: pd.DataFrame) -> np.ndarray:
    """Label-window length per row from ``label_end - feature_cutoff`` (the features module's frame)."""
    if not {"label_end", "feature_cutoff"} <= set(frame.columns):
        raise ValueError("pass horizon_days= or provide label_end and feature_cutoff columns")
    delta = pd.to_datetime(frame["label_end"]) - pd.to_datetime(frame["feature_cutoff"])
    return delta.dt.days.to_numpy(dtype=float)


@dataclass
class NPDModel:
    """XGBoost AFT next-purchase model; see the module docstring for the maths.

    ``distribution`` / ``scale``: ``None`` = choose by validation among ``distributions`` x
    ``scales``. The number of boosting rounds is chosen by early stopping on the same
    validation split (``valid_fraction`` of the rows, drawn with ``seed``), then the model is
    refitted on all rows with that many rounds.

    Large customer bases: ``max_selection_rows`` caps the rows of the search (train +
    validation split) and ``max_training_rows`` those of the final refit, each a deterministic
    customer sample (smallest seeded hash of ``customer_id``, or a seeded random sample without
    that column); 0 = no cap, and smaller frames are untouched. ``scale_search="local"`` walks
    each distribution's sorted scale grid from its middle towards the better neighbour and stops
    at a local minimum of the validation loss - the full grid's choice whenever the loss is
    unimodal in the scale - instead of fitting every scale (``"grid"``).
    """

    distribution: str | None = None
    scale: float | None = None
    distributions: tuple[str, ...] = DISTRIBUTIONS
    scales: tuple[float, ...] = DEFAULT_SCALES
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    learning_rate: float = 0.05
    max_depth: int = 4
    min_child_weight: float = 1.0
    subsample: float = 0.8
    reg_lambda: float = 1.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 30
    valid_fraction: float = 0.2
    seed: int = 0
    n_threads: int = 0
    max_selection_rows: int = 0
    max_training_rows: int = 0
    scale_search: str = "grid"
    booster_: xgb.Booster | None = field(default=None, init=False, repr=False)
    feature_cols_: list[str] = field(default_factory=list, init=False)
    n_rounds_: int = field(default=0, init=False)
    selection_: list[dict] = field(default_factory=list, init=False)

    def _params(self, distribution: str, scale: float, base_score: float) -> dict:
        return {
            "objective": "survival:aft",
            "eval_metric": "aft-nloglik",
            "aft_loss_distribution": distribution,
            "aft_loss_distribution_scale": float(scale),
            "base_score": float(base_score),
            "tree_method": "hist",
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.n_threads,
            "verbosity": 0,
        }

    @staticmethod
    def _dmatrix(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> xgb.DMatrix:
        matrix = xgb.DMatrix(x)
        matrix.set_float_info("label_lower_bound", lower)
        matrix.set_float_info("label_upper_bound", upper)
        return matrix

    @staticmethod
    def _base_score(lower: np.ndarray, upper: np.ndarray) -> float:
        """Censoring-aware starting time: the exponential MLE mean = total exposure / events.

        xgboost's default start (0.5 days) is far from purchase times and costs hundreds of
        rounds; the mean of the lower bounds would start too short under heavy censoring.
        """
        events = max(int(np.sum(np.isfinite(upper))), 1)
        return float(max(lower.sum() / events, 1.0))

    def fit(
        self,
        frame: pd.DataFrame,
        feature_cols: list[str],
        duration_col: str = DURATION_COLUMN,
        horizon_days=None,
    ) -> NPDModel:
        """Fit on rows with features at a cutoff and ``duration_col`` days to the next purchase.

        ``duration_col`` is null for customers without a purchase in the label window; they are
        censored at ``horizon_days`` (a scalar or per-row values; default ``label_end -
        feature_cutoff`` from the frame, as ``features.build_training_frame`` returns them).
        """
        if len(frame) < MIN_TRAINING_ROWS:
            raise HistoryTooShort(f"need at least {MIN_TRAINING_ROWS} training rows, got {len(frame)}")
        horizon = infer_horizon_days(frame) if horizon_days is None else horizon_days
        lower, upper = survival_bounds(frame[duration_col], horizon)
        if not np.isfinite(upper).any():
            raise HistoryTooShort("every row is censored: no purchase was observed in the label window")
        x = _as_matrix(frame, feature_cols)
        base = self._base_score(lower, upper)

        search = _sample_positions(frame, self.max_selection_rows, self.seed)
        order = search[np.random.default_rng(self.seed).permutation(len(search))]
        n_valid = max(int(round(len(search) * self.valid_fraction)), 1)
        valid, train = order[:n_valid], order[n_valid:]
        dtrain = self._dmatrix(x[train], lower[train], upper[train])
        dvalid = self._dmatrix(x[valid], lower[valid], upper[valid])

        self.selection_ = []

        def evaluate(distribution: str, scale: float) -> float:
            booster = xgb.train(
                self._params(distribution, scale, base),
                dtrain,
                num_boost_round=self.max_rounds,
                evals=[(dvalid, "valid")],
                early_stopping_rounds=self.early_stopping_rounds,
                verbose_eval=False,
            )
            self.selection_.append(
                {
                    "distribution": distribution,
                    "scale": float(scale),
                    "valid_nloglik": float(booster.best_score),
                    "rounds": int(booster.best_iteration) + 1,
                }
            )
            return float(booster.best_score)

        scales = (self.scale,) if self.scale else tuple(self.scales)
        for distribution in (self.distribution,) if self.distribution else self.distributions:
            if self.scale_search == "local":
                _local_scale_search(lambda s, d=distribution: evaluate(d, s), scales)
            elif self.scale_search == "grid":
                for scale in scales:
                    evaluate(distribution, scale)
            else:
                raise ValueError(f"scale_search must be 'grid' or 'local', got {self.scale_search!r}")
        best = min(self.selection_, key=lambda row: row["valid_nloglik"])
        self.distribution, self.scale, self.n_rounds_ = best["distribution"], best["scale"], best["rounds"]
        final = _sample_positions(frame, self.max_training_rows, self.seed)
        self.booster_ = xgb.train(
            self._params(self.distribution, self.scale, base),
            self._dmatrix(x[final], lower[final], upper[final]),
            num_boost_round=self.n_rounds_,
        )
        self.feature_cols_ = list(feature_cols)
        return self

    def predicted_time(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's time prediction ``yhat = exp(f(x))`` (the location of ln T, in days)."""
        if self.booster_ is None:
            raise RuntimeError("NPDModel is not fitted")
        # inplace_predict: the DMatrix's values bit for bit (NaN missing in both) without building it
        return self.booster_.inplace_predict(_as_matrix(frame, self.feature_cols_))

    def probability_within(self, frame: pd.DataFrame, days: float) -> np.ndarray:
        return aft_cdf(days, self.predicted_time(frame), self.distribution, self.scale)

    def predict(self, frame: pd.DataFrame, cutoff=None, within_days: float | None = None) -> pd.DataFrame:
        """Median days to next purchase, its date (cutoff + days) and P(purchase within h days).

        The cutoff is ``cutoff`` or the frame's ``feature_cutoff`` column. With ``within_days``
        = L, ``days_to_next_given_purchase`` is the median of T given T <= L: the quantile
        F^-1(F(L) / 2).
        """
        yhat = self.predicted_time(frame)
        probabilities = {h: aft_cdf(h, yhat, self.distribution, self.scale) for h in self.horizons}
        given = None
        if within_days is not None:
            half = aft_cdf(within_days, yhat, self.distribution, self.scale) / 2.0
            given = aft_quantile(half, yhat, self.distribution, self.scale)
        median = aft_median(yhat, self.distribution, self.scale)
        return prediction_frame(frame, median, probabilities, cutoff, given)


def _sample_positions(frame: pd.DataFrame, max_rows: int, seed: int) -> np.ndarray:
    """Row positions of a deterministic sample of at most ``max_rows`` rows (all rows if 0 / fewer).

    With a ``customer_id`` column: the customers with the smallest seeded hash of their id (the
    same customers every run); otherwise a seeded random sample. Positions are in row order.
    """
    n = len(frame)
    if not max_rows or n <= max_rows:
        return np.arange(n)
    if "customer_id" in frame:
        keys = pd.util.hash_pandas_object(frame["customer_id"].astype(str), index=False).to_numpy()
        return np.sort(np.argpartition(keys, max_rows - 1)[:max_rows])
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _local_scale_search(evaluate, scales) -> None:
    """Walk the sorted ``scales`` from the middle towards the better neighbour while the loss falls.

    Evaluates the middle scale and both neighbours, then keeps stepping in the improving
    direction until the next scale is no better; the minimum found is the grid's minimum when
    the loss is unimodal in the scale.
    """
    grid = sorted(float(s) for s in scales)
    loss: dict[int, float] = {}

    def at(i: int) -> float:
        if i not in loss:
            loss[i] = evaluate(grid[i])
        return loss[i]

    best = len(grid) // 2
    at(best)
    for step in (-1, 1):
        if 0 <= best + step < len(grid):
            at(best + step)
    direction = min((i for i in loss), key=lambda i: (loss[i], abs(i - len(grid) // 2))) - best
    if direction == 0:
        return
    best += direction
    while 0 <= best + direction < len(grid) and at(best + direction) < loss[best]:
        best += direction


def btyd_purchase_probability(params: dict, frequency, T, p_alive, t) -> np.ndarray:
    """P(at least one purchase within ``t``) under BG/NBD; ``T`` and ``t`` in the same unit.

    ``P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))``: exact for BG/NBD, whose
    customers only die right after a purchase, so an alive customer's next purchase time is
    exponential with the Gamma(r + x, alpha + T) posterior rate.
    """
    r, alpha = float(params["r"]), float(params["alpha"])
    shape = r + np.asarray(frequency, dtype=float)
    rate = alpha + np.asarray(T, dtype=float)
    no_purchase_if_alive = np.exp(shape * (np.log(rate) - np.log(rate + np.asarray(t, dtype=float))))
    return np.asarray(p_alive, dtype=float) * (1.0 - no_purchase_if_alive)


def btyd_median_time(params: dict, frequency, T, p_alive=None) -> np.ndarray:
    """Median time to the next purchase under BG/NBD (unit of ``T``), in closed form.

    With ``p_alive=None`` it is the median *given the customer is alive*:
    ``(alpha + T) * (2 ** (1 / (r + x)) - 1)``, always finite. With ``p_alive`` it is the median
    of the unconditional curve, solving ``P(alive) * (1 - S) = 1/2``; it is infinite when
    P(alive) <= 1/2 because the curve never reaches one half.
    """
    r, alpha = float(params["r"]), float(params["alpha"])
    shape = r + np.asarray(frequency, dtype=float)
    rate = alpha + np.asarray(T, dtype=float)
    if p_alive is None:
        return rate * np.expm1(np.log(2.0) / shape)
    p_alive = np.asarray(p_alive, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        survivor = 1.0 - 0.5 / p_alive
        median = rate * np.expm1(-np.log(survivor) / shape)
    return np.where(p_alive > 0.5, median, np.inf)


def btyd_median_time_within(params: dict, frequency, T, window) -> np.ndarray:
    """Median time to the next purchase given it happens within ``window`` (unit of ``T``).

    P(alive) multiplies both sides and cancels: with ``S(t) = (b / (b + t)) ** s``,
    ``b = alpha + T``, ``s = r + x``, solve ``1 - S(t) = (1 - S(window)) / 2``.
    """
    r, alpha = float(params["r"]), float(params["alpha"])
    shape = r + np.asarray(frequency, dtype=float)
    rate = alpha + np.asarray(T, dtype=float)
    target = 1.0 - 0.5 * (1.0 - np.exp(shape * (np.log(rate) - np.log(rate + window))))
    return rate * np.expm1(-np.log(target) / shape)


@dataclass
class BTYDTiming:
    """NPD baseline from a fitted lifetimes ``BetaGeoFitter`` (time unit: weeks, as ``btyd``).

    ``days_to_next`` is the median *given alive* (finite for everyone; "if they come back,
    when"), while the probabilities include P(alive), so a likely-dead customer gets a date but
    a low ``p_purchase_30d``.
    """

    fitter: object
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    days_per_unit: float = 7.0

    def predict(
        self,
        frame: pd.DataFrame,
        frequency_col: str = "frequency",
        recency_col: str = "recency_weeks",
        T_col: str = "T_weeks",
        cutoff=None,
        within_days: float | None = None,
    ) -> pd.DataFrame:
        """Median days given alive, P(purchase within h days), ``p_alive`` (see the class doc)."""
        from lifetimes import BetaGeoFitter

        # BG/NBD and MBG/NBD (a BetaGeoFitter subclass): an alive customer cannot drop out before
        # the next purchase in either, so the timing formulas hold; btyd.TransactionModel wraps them
        if not isinstance(getattr(self.fitter, "fitter", self.fitter), BetaGeoFitter):
            raise TypeError("BTYD timing is exact for BG/NBD and MBG/NBD only; pass a fitted (M)BG/NBD")
        params = {k: float(v) for k, v in self.fitter.params_.items()}
        x = frame[frequency_col].to_numpy(dtype=float)
        T = frame[T_col].to_numpy(dtype=float)
        p_alive = np.asarray(
            self.fitter.conditional_probability_alive(x, frame[recency_col].to_numpy(dtype=float), T),
            dtype=float,
        )
        probabilities = {
            h: btyd_purchase_probability(params, x, T, p_alive, h / self.days_per_unit) for h in self.horizons
        }
        days = btyd_median_time(params, x, T) * self.days_per_unit
        given = None
        if within_days is not None:
            given = btyd_median_time_within(params, x, T, within_days / self.days_per_unit) * self.days_per_unit
        out = prediction_frame(frame, days, probabilities, cutoff, given)
        out["p_alive"] = p_alive
        return out


BTYD_ONLY = "btyd_only"
"""The objective of a next-purchase model without a booster (``ml.model_runs``), as the CLV side's."""


@dataclass
class BTYDNextPurchase:
    """The next-purchase model served when the history is too short to train the AFT model: the
    purchase-timing curve of the BTYD fit that ``ml/btyd_scores`` serves (``transactions``, a
    ``btyd.TransactionModel`` of any family; time unit weeks).

    ``p_purchase_{h}d`` = P(alive) x P(a purchase within h days | alive)
    (``TransactionModel.probability_of_purchase_within``), the same P(alive) as the CLV scores;
    ``days_to_next_given_purchase`` = the median time given a purchase within ``within_days``
    (``median_purchase_time_within``), which is what ``next_purchase_contract`` serves as the date.
    ``days_to_next`` (the unconditional median) is not served and left NaN: under a BTYD it is
    infinite for every customer with P(alive) at most one half.
    """

    transactions: object
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    days_per_unit: float = 7.0

    def predict(self, frame: pd.DataFrame, cutoff=None, within_days: float | None = None,
                frequency_col: str = "frequency", recency_col: str = "recency_weeks",
                T_col: str = "T_weeks") -> pd.DataFrame:
        """The common NPD output (``prediction_frame``) from each row's BTYD inputs (weeks)."""
        x, tx, age = (frame[c].to_numpy(dtype=float) for c in (frequency_col, recency_col, T_col))
        probabilities = {h: self.transactions.probability_of_purchase_within(h / self.days_per_unit, x, tx, age)
                         for h in self.horizons}
        given = None
        if within_days is not None:
            given = self.transactions.median_purchase_time_within(within_days / self.days_per_unit, x, age)
            given = given * self.days_per_unit
        return prediction_frame(frame, np.full(len(frame), np.nan), probabilities, cutoff, given)


@dataclass
class NaiveCadence:
    """Baseline: next purchase = last order + the customer's mean inter-purchase interval.

    One-time buyers get the pooled population interval (total gap days / total gaps, so heavy
    buyers weigh by their number of gaps). A customer already past their expected date is
    rolled forward by whole intervals to the first expected slot after the cutoff: a date in the
    past is no prediction of the next purchase. Probabilities come from an exponential with the
    interval as mean (memoryless, so the time already waited does not change them).
    """

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    recency_col: str = "days_since_last_order"
    interval_col: str = "mean_interpurchase_days"
    frequency_col: str = "frequency"
    population_interval_: float = field(default=float("nan"), init=False)

    def fit(self, frame: pd.DataFrame) -> NaiveCadence:
        interval = pd.to_numeric(frame[self.interval_col], errors="coerce").to_numpy(dtype=float)
        gaps = frame[self.frequency_col].to_numpy(dtype=float)
        known = np.isfinite(interval) & (gaps > 0)
        if not known.any():
            raise ValueError("no repeat buyers: the population inter-purchase interval is undefined")
        self.population_interval_ = float((interval[known] * gaps[known]).sum() / gaps[known].sum())
        return self

    def intervals(self, frame: pd.DataFrame) -> np.ndarray:
        interval = pd.to_numeric(frame[self.interval_col], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isfinite(interval) & (interval > 0), interval, self.population_interval_)

    def predict(self, frame: pd.DataFrame, cutoff=None, within_days: float | None = None) -> pd.DataFrame:
        """Next expected slot after the cutoff; exponential probabilities (and median given a
        purchase within ``within_days``, ``-m ln(1 - (1 - exp(-L / m)) / 2)``)."""
        if not np.isfinite(self.population_interval_):
            raise RuntimeError("NaiveCadence is not fitted")
        interval = self.intervals(frame)
        since_last = frame[self.recency_col].to_numpy(dtype=float)
        slots = np.floor(since_last / interval) + 1.0
        days = slots * interval - since_last
        probabilities = {h: -np.expm1(-h / interval) for h in self.horizons}
        given = None
        if within_days is not None:
            given = -interval * np.log1p(0.5 * np.expm1(-within_days / interval))
        return prediction_frame(frame, days, probabilities, cutoff, given)
