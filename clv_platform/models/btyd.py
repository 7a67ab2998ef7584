"""Probabilistic ("buy 'til you die") CLV baseline: BG/NBD or Pareto/NBD plus Gamma-Gamma spend.

Follows the protocol of Fader, Hardie & Lee (2005) so the CDNOW 1/10 sample reproduces the
published parameters:

* several transactions of one customer on one day are one transaction (amounts summed);
* ``frequency`` is the number of *repeat* transaction days in the calibration period;
* ``recency`` (t_x) and ``T`` are measured in days and divided by 7 - weeks, never rounded,
  because rounding to whole weeks visibly moves the estimates (r goes from 0.243 to about 0.28);
* ``monetary`` is the mean spend of the repeat transactions (the lifetimes convention; the first
  purchase is excluded because its value is drawn from a different process).

The time unit of every model and every horizon in this module is the week. The fitters come from
``lifetimes``; the transaction models are fitted on the distinct (frequency, recency, T)
combinations with a weight = number of customers, exactly as Fader and Hardie condense the RFM
matrix - the likelihood is identical and the fit is much faster on large customer bases.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError

BGNBD = "bgnbd"
PARETO_NBD = "pareto_nbd"
TRANSACTION_MODELS = (BGNBD, PARETO_NBD)

DAYS_PER_WEEK = 7.0
WEEKS_PER_MONTH = 4.345
"""lifetimes' month length in weeks (``factor`` for ``freq="W"`` in ``customer_lifetime_value``)."""
WEEKS_PER_YEAR = 12 * WEEKS_PER_MONTH
"""A year of twelve lifetimes months, so annual and monthly discounting agree exactly."""

SUMMARY_COLUMNS = [
    "first_purchase",
    "frequency",
    "recency",
    "T",
    "monetary",
    "calibration_spend",
    "holdout_purchases",
    "holdout_spend",
]

_PARETO_STARTS = ((0.5, 0.3, 0.5, 0.3), (1.0, 1.0, 1.0, 1.0))
"""Nelder-Mead starts for Pareto/NBD, in lifetimes' internal scale where max(T) = 1."""


def _daily(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and day with the day's amounts summed (the papers' protocol)."""
    frame = transactions[["customer_id", "order_date", "amount"]].copy()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["order_date"] = pd.to_datetime(frame["order_date"]).dt.normalize()
    frame["amount"] = frame["amount"].astype(float)
    return frame.groupby(["customer_id", "order_date"], as_index=False, sort=True)["amount"].sum()


def summarize(
    transactions: pd.DataFrame,
    calibration_end,
    holdout_end=None,
) -> pd.DataFrame:
    """Per-customer RFM summary at ``calibration_end`` (inclusive) and holdout outcomes.

    Only customers whose first purchase is on or before ``calibration_end`` are summarized; a
    holdout purchase is a transaction day in (calibration_end, holdout_end]. Columns:
    ``first_purchase``, ``frequency`` (repeat transaction days), ``recency`` and ``T`` (weeks,
    days / 7), ``monetary`` (mean repeat-transaction spend, 0 without repeats),
    ``calibration_spend`` (all calibration spend including the first purchase),
    ``holdout_purchases`` and ``holdout_spend`` (both 0 when ``holdout_end`` is None).
    The index is ``customer_id``.
    """
    calibration_end = pd.Timestamp(calibration_end).normalize()
    daily = _daily(transactions)
    calibration = daily[daily["order_date"] <= calibration_end]

    grouped = calibration.groupby("customer_id", sort=True)
    first = grouped["order_date"].min()
    last = grouped["order_date"].max()
    days = grouped.size()
    spend = grouped["amount"].sum()
    first_amount = grouped["amount"].first()

    frequency = (days - 1).astype(int)
    repeat_spend = spend - first_amount
    monetary = (repeat_spend / frequency.where(frequency > 0)).fillna(0.0)

    summary = pd.DataFrame(
        {
            "first_purchase": first,
            "frequency": frequency,
            "recency": (last - first).dt.days / DAYS_PER_WEEK,
            "T": (calibration_end - first).dt.days / DAYS_PER_WEEK,
            "monetary": monetary,
            "calibration_spend": spend,
        }
    )
    summary.index.name = "customer_id"

    if holdout_end is None:
        summary["holdout_purchases"] = 0
        summary["holdout_spend"] = 0.0
        return summary

    holdout_end = pd.Timestamp(holdout_end).normalize()
    holdout = daily[(daily["order_date"] > calibration_end) & (daily["order_date"] <= holdout_end)]
    holdout_grouped = holdout.groupby("customer_id")
    summary["holdout_purchases"] = holdout_grouped.size().reindex(summary.index, fill_value=0).astype(int)
    summary["holdout_spend"] = holdout_grouped["amount"].sum().reindex(summary.index, fill_value=0.0)
    return summary


def holdout_weeks(calibration_end, holdout_end) -> float:
    """Length of the holdout window in weeks (CDNOW: 273 days = 39 weeks)."""
    return (pd.Timestamp(holdout_end) - pd.Timestamp(calibration_end)).days / DAYS_PER_WEEK


def condense(summary: pd.DataFrame) -> pd.DataFrame:
    """Distinct (frequency, recency, T) combinations with ``weight`` = number of customers."""
    return (
        summary.groupby(["frequency", "recency", "T"], sort=True)
        .size()
        .rename("weight")
        .reset_index()
    )


# Penalizers tried, in order, when a fit does not converge: real stores (and synthetic
# benchmarks) are not always BG/NBD-shaped, and a slightly shrunk fit beats a failed refresh.
FALLBACK_PENALIZERS = (0.001, 0.01, 0.1)


def _fit_transactions(
    frequency, recency, T, weights, model: str, penalizer: float
) -> BetaGeoFitter | ParetoNBDFitter:
    """Fit one lifetimes transaction model.

    BG/NBD uses lifetimes' gradient fit as is. Pareto/NBD is fitted by Nelder-Mead from random
    starts in lifetimes with a loose default tolerance (1e-6), which stops early on the flat
    (s, beta) ridge of CDNOW; here it runs from fixed starts with tol=1e-10 and keeps the best
    optimum, which reproduces the published estimates and is deterministic.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if model == BGNBD:
            return BetaGeoFitter(penalizer_coef=penalizer).fit(frequency, recency, T, weights=weights)
        if model == PARETO_NBD:
            fits = [
                ParetoNBDFitter(penalizer_coef=penalizer).fit(
                    frequency,
                    recency,
                    T,
                    weights=weights,
                    initial_params=np.array(start),
                    tol=1e-10,
                    maxiter=20000,
                )
                for start in _PARETO_STARTS
            ]
            return min(fits, key=lambda fitter: fitter._negative_log_likelihood_)
    raise ValueError(f"unknown transaction model {model!r}; expected one of {TRANSACTION_MODELS}")


def transaction_log_likelihood(fitter, frequency, recency, T, weights=None) -> float:
    """Total log-likelihood in week units (the scale of the published -9582.4 for BG/NBD).

    lifetimes reports a normalized negative log-likelihood in its internal rescaled time unit
    (max T = 1), which is neither a sum nor in weeks, so it is recomputed here from the params.
    """
    frequency = np.asarray(frequency, dtype=float)
    recency = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    weights = np.ones_like(T) if weights is None else np.asarray(weights, dtype=float)
    if isinstance(fitter, BetaGeoFitter):
        params = np.log(fitter.params_[["r", "alpha", "a", "b"]].to_numpy(dtype=float))
        mean_nll = BetaGeoFitter._negative_log_likelihood(params, frequency, recency, T, weights, 0.0)
        return float(-mean_nll * weights.sum())
    params = fitter.params_[["r", "alpha", "s", "beta"]].to_numpy(dtype=float)
    return float((weights * ParetoNBDFitter._conditional_log_likelihood(params, frequency, recency, T)).sum())


@dataclass(frozen=True)
class SpendFit:
    """Gamma-Gamma spend model and how many repeat customers it had to leave out."""

    fitter: GammaGammaFitter | None
    n_fitted: int
    n_excluded_nonpositive: int
    population_mean: float

    def expected_average_order_value(self, frequency, monetary) -> np.ndarray:
        """E[spend per transaction | x, m]: shrinks m towards the population mean by x.

        Customers without a repeat purchase (x = 0) get the population mean p*v/(q-1). Customers
        whose repeat spend was zero or negative were excluded from the fit; their non-positive mean
        is clipped to 0 and shrunk the same way, so they score below the population mean.
        """
        frequency = np.asarray(frequency, dtype=float)
        monetary = np.clip(np.asarray(monetary, dtype=float), 0.0, None)
        if self.fitter is None:
            return np.full_like(frequency, self.population_mean)
        return np.asarray(self.fitter.conditional_expected_average_profit(frequency, monetary), dtype=float)


def fit_gamma_gamma(summary: pd.DataFrame, penalizer: float = 0.0) -> SpendFit:
    """Fit Gamma-Gamma on customers with frequency > 0 and monetary > 0.

    Zero/negative repeat spend (CDNOW has $0 rows) is outside the model's support, so those
    customers are excluded from the fit and counted in ``n_excluded_nonpositive``. With fewer than
    two usable customers no model is fitted and the mean repeat spend is the population mean.
    """
    repeaters = summary[summary["frequency"] > 0]
    usable = repeaters[repeaters["monetary"] > 0]
    excluded = int(len(repeaters) - len(usable))
    if len(usable) < 2:
        mean = float(usable["monetary"].mean()) if len(usable) else 0.0
        return SpendFit(None, int(len(usable)), excluded, mean)
    for attempt in (penalizer, *[p for p in FALLBACK_PENALIZERS if p > penalizer]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fitter = GammaGammaFitter(penalizer_coef=attempt).fit(usable["frequency"], usable["monetary"])
        except ConvergenceError:
            continue
        p, q, v = (float(fitter.params_[k]) for k in ("p", "q", "v"))
        if q > 1:
            return SpendFit(fitter, int(len(usable)), excluded, p * v / (q - 1))
    # No usable spend model (e.g. no heterogeneity in spend between customers): every customer
    # gets the observed mean repeat spend rather than the refresh failing.
    return SpendFit(None, int(len(usable)), excluded, float(usable["monetary"].mean()))


@dataclass(frozen=True)
class BTYDModel:
    """A fitted transaction model (BG/NBD or Pareto/NBD) plus the Gamma-Gamma spend model."""

    model: str
    transactions: BetaGeoFitter | ParetoNBDFitter
    spend: SpendFit
    log_likelihood: float
    n_customers: int
    penalizer: float = 0.0

    def params(self) -> dict:
        """Fitted parameters (week units) of both sub-models, plus the fit diagnostics."""
        out = {k: float(v) for k, v in self.transactions.params_.items()}
        spend = {}
        if self.spend.fitter is not None:
            spend = {k: float(v) for k, v in self.spend.fitter.params_.items()}
        return {
            "model": self.model,
            "transaction_params": out,
            "log_likelihood": self.log_likelihood,
            "n_customers": self.n_customers,
            "spend_params": spend,
            "spend_population_mean": self.spend.population_mean,
            "spend_n_fitted": self.spend.n_fitted,
            "spend_n_excluded_nonpositive": self.spend.n_excluded_nonpositive,
        }

    def expected_purchases(self, summary: pd.DataFrame, horizon_weeks: float) -> np.ndarray:
        """E[repeat purchases in the next ``horizon_weeks`` | frequency, recency, T]."""
        return np.asarray(
            self.transactions.conditional_expected_number_of_purchases_up_to_time(
                horizon_weeks,
                summary["frequency"].to_numpy(dtype=float),
                summary["recency"].to_numpy(dtype=float),
                summary["T"].to_numpy(dtype=float),
            ),
            dtype=float,
        )

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.transactions.conditional_probability_alive(
                summary["frequency"].to_numpy(dtype=float),
                summary["recency"].to_numpy(dtype=float),
                summary["T"].to_numpy(dtype=float),
            ),
            dtype=float,
        )

    def expected_average_order_value(self, summary: pd.DataFrame) -> np.ndarray:
        return self.spend.expected_average_order_value(summary["frequency"], summary["monetary"])

    def discounted_clv(
        self,
        summary: pd.DataFrame,
        horizon_weeks: float,
        annual_discount_rate: float = 0.10,
        period_weeks: float = WEEKS_PER_MONTH,
    ) -> np.ndarray:
        """Discounted expected spend over ``horizon_weeks``.

        The horizon is cut into periods of ``period_weeks`` (default one lifetimes month,
        4.345 weeks; a shorter last period if the horizon is not a multiple). Each period's
        incremental expected purchases times the expected order value are discounted at the end
        of the period by (1 + annual_rate) ** (t / 52.14), 52.14 = 12 lifetimes months. For a
        horizon of M whole months this equals lifetimes'
        ``GammaGammaFitter.customer_lifetime_value(model, ..., time=M, freq="W",
        discount_rate=(1 + annual_rate) ** (1 / 12) - 1)`` - lifetimes' ``time`` is in months and
        its ``discount_rate`` is monthly, whatever ``freq`` the data are in.
        """
        steps = np.arange(period_weeks, horizon_weeks + 1e-9, period_weeks)
        if steps.size == 0 or horizon_weeks - steps[-1] > 1e-9:
            steps = np.append(steps, horizon_weeks)
        aov = self.expected_average_order_value(summary)
        clv = np.zeros(len(summary))
        previous = np.zeros(len(summary))
        for t in steps:
            cumulative = self.expected_purchases(summary, float(t))
            discount = (1.0 + annual_discount_rate) ** (-(t / WEEKS_PER_YEAR))
            clv += (cumulative - previous) * aov * discount
            previous = cumulative
        return clv

    def score(
        self,
        summary: pd.DataFrame,
        horizon_weeks: float,
        annual_discount_rate: float = 0.10,
    ) -> pd.DataFrame:
        """Per-customer scores over ``horizon_weeks``: p_alive, purchases, order value, CLV.

        ``expected_spend`` is undiscounted (purchases x order value) - the quantity compared with
        actual holdout spend in a backtest; ``clv`` is the discounted version.
        """
        purchases = self.expected_purchases(summary, horizon_weeks)
        aov = self.expected_average_order_value(summary)
        return pd.DataFrame(
            {
                "p_alive": self.probability_alive(summary),
                "expected_purchases": purchases,
                "expected_aov": aov,
                "expected_spend": purchases * aov,
                "clv": self.discounted_clv(summary, horizon_weeks, annual_discount_rate),
            },
            index=summary.index,
        )


def fit_btyd(
    summary: pd.DataFrame,
    model: str = BGNBD,
    penalizer: float = 0.0,
    spend_penalizer: float = 0.0,
) -> BTYDModel:
    """Fit a transaction model on the condensed RFM combinations and Gamma-Gamma on spend.

    If lifetimes reports non-convergence, the fit is retried with growing L2 penalizers
    (`FALLBACK_PENALIZERS`); the penalizer used is recorded on the result.
    """
    combos = condense(summary)
    args = (combos["frequency"], combos["recency"], combos["T"], combos["weight"], model)
    for attempt in (penalizer, *[p for p in FALLBACK_PENALIZERS if p > penalizer]):
        try:
            fitter = _fit_transactions(*args, attempt)
            penalizer = attempt
            break
        except ConvergenceError:
            if attempt == FALLBACK_PENALIZERS[-1] or attempt > FALLBACK_PENALIZERS[-1]:
                raise
    log_likelihood = transaction_log_likelihood(
        fitter, combos["frequency"], combos["recency"], combos["T"], combos["weight"]
    )
    return BTYDModel(
        model=model,
        transactions=fitter,
        spend=fit_gamma_gamma(summary, spend_penalizer),
        log_likelihood=log_likelihood,
        n_customers=int(len(summary)),
        penalizer=penalizer,
    )


def purchases_by_frequency(
    summary: pd.DataFrame, predictions: dict[str, np.ndarray], cap: int = 7
) -> list[dict]:
    """Mean holdout purchases by calibration repeat purchases x (x >= ``cap`` pooled as "7+").

    One row per x: customers, actual mean, and one mean per named prediction - the
    conditional-expectation table of Fader, Hardie & Lee (2005).
    """
    bucket = np.minimum(summary["frequency"].to_numpy(), cap)
    frame = pd.DataFrame({"x": bucket, "actual": summary["holdout_purchases"].to_numpy(dtype=float)})
    for name, values in predictions.items():
        frame[name] = np.asarray(values, dtype=float)
    table = frame.groupby("x").agg(
        customers=("actual", "size"), **{col: (col, "mean") for col in ["actual", *predictions]}
    )
    return [
        {
            "x": f"{x}+" if x == cap else str(x),
            **{k: (int(v) if k == "customers" else float(v)) for k, v in row.items()},
        }
        for x, row in table.iterrows()
    ]


def cumulative_repeat_transactions(
    transactions: pd.DataFrame,
    fitters: dict[str, BetaGeoFitter | ParetoNBDFitter],
    calibration_end,
    holdout_end,
    start=None,
) -> dict:
    """Week-by-week cumulative repeat transactions of the calibration cohort: models vs actual.

    Week w covers days [start + 7(w-1), start + 7w); the cumulative total is read at the end of
    its last day. A customer who first bought on day f (same day index) has age (d - f) / 7
    weeks at the end of day d and contributes the unconditional E[X(age)] of each model - the
    forecast uses only the fitted parameters and the first-purchase dates, as in the papers'
    tracking plots. Customers are grouped by first-purchase day, so the work is
    (#first days x #weeks), not per customer. Only the cohort that first bought on or before
    ``calibration_end`` is tracked, and same-day transactions count once.

    Returns ``{"weeks": [...], "actual": [...], "models": {name: [...]}, "calibration_weeks",
    "totals": {"actual", name...}}``, the totals read at the last week.
    """
    calibration_end = pd.Timestamp(calibration_end).normalize()
    holdout_end = pd.Timestamp(holdout_end).normalize()
    daily = _daily(transactions)
    first = daily.groupby("customer_id")["order_date"].transform("min")
    cohort = daily[first <= calibration_end].assign(first_purchase=first[first <= calibration_end])
    start = pd.Timestamp(start).normalize() if start is not None else cohort["first_purchase"].min()

    n_weeks = int(np.ceil(((holdout_end - start).days + 1) / DAYS_PER_WEEK))
    week_end_day = np.arange(1, n_weeks + 1) * 7 - 1

    repeats = cohort[(cohort["order_date"] > cohort["first_purchase"]) & (cohort["order_date"] <= holdout_end)]
    repeat_days = (repeats["order_date"] - start).dt.days.to_numpy()
    actual = np.searchsorted(np.sort(repeat_days), week_end_day, side="right")

    first_days = cohort.drop_duplicates("customer_id")["first_purchase"]
    cohort_sizes = ((first_days - start).dt.days).value_counts().sort_index()
    f = cohort_sizes.index.to_numpy(dtype=float)
    n = cohort_sizes.to_numpy(dtype=float)
    age = np.clip((week_end_day[:, None] - f[None, :]) / DAYS_PER_WEEK, 0.0, None)

    models = {}
    for name, fitter in fitters.items():
        expected = np.zeros_like(age)
        positive = age > 0
        expected[positive] = np.asarray(fitter.expected_number_of_purchases_up_to_time(age[positive]), dtype=float)
        models[name] = (expected * n[None, :]).sum(axis=1)

    calibration_weeks = ((calibration_end - start).days + 1) / DAYS_PER_WEEK
    return {
        "start": start.date().isoformat(),
        "weeks": list(range(1, n_weeks + 1)),
        "calibration_weeks": float(calibration_weeks),
        "actual": [int(v) for v in actual],
        "models": {name: [float(v) for v in values] for name, values in models.items()},
        "totals": {"week": n_weeks, "actual": int(actual[-1]), **{k: float(v[-1]) for k, v in models.items()}},
    }
