"""Store revenue for the coming months: existing customers plus new customers, with 80 % intervals.

The forecast starts the day after a cutoff C (the scoring cutoff in the asset, a past date in the
backtest) and covers twelve monthly periods plus 30/90/365-day totals.

* **Existing customers** (first order on or before C): each customer's predicted spend over the
  score horizon H (``scores.customer_clv.predicted_spend``; in the backtest the BTYD expected
  spend) is spread over time by the fitted purchase model: the spend expected by day d is
  ``predicted_i * E_i[X(tau(d))] / E_i[X(tau(H))]``, E_i the BTYD conditional expected number of
  purchases. ``tau`` is *seasonal operational time*: a day counts as ``s(month)/7`` weeks, where
  the month-of-year index ``s`` (mean 1) is the store's actual repeat purchases divided by what the
  fitted model expects for them, month by month (the papers' tracking plot). So the existing part
  over any window is exactly the sum of the per-customer expected spend over that window
  (``customer_expected_spend``), and over H it is the sum of the per-customer predictions.
* **New customers**: daily first orders (an untied guest order counts as one new buyer) are fitted
  with a Poisson regression on a log-linear trend, day of week and yearly Fourier terms; the
  forecast daily arrivals times the mean first-order value of the last year, plus their early
  repeat spend: the model's unconditional E[X(tau(d) - tau(a))] for a customer arriving on day a
  times the Gamma-Gamma population mean order value.

Intervals (80 %, symmetric in log space: revenue x exp(+-1.2816 sigma), sigma^2 = ln(1 + CV^2) of the
part's mean and sd, as the CLV store total's interval is; a normal interval floored at 0 put the
lower bound of a store's 365-day existing revenue at 0 as soon as its relative sd passed 0.78, a
bound no store of steady buyers will meet): purchase counts are compound Poisson
(order values Gamma with CV 1/sqrt(p)), counts of new customers are over-dispersed by the Pearson
dispersion of the weekly fit, and each part has a systematic relative error: the larger of the
in-sample scatter (the month-to-month scatter of actual vs expected repeat purchases around the
seasonal index; the extra-Poisson scatter of monthly new-customer counts around their fit) and the
error of the same forecast *rehearsed* six months before the cutoff (``rehearse``), grown with the
square root of the horizon and taken as one draw of the method's error: its 80 % quantile is
t(0.9, 1) = 3.078 times the rehearsal's scale, not 1.2816 times (``REHEARSAL_T_FACTOR``; the CLV
store total's interval uses the same t rule, ``models.total_interval``). Without a rehearsal (less
than ``MIN_REHEARSAL_HISTORY_DAYS`` of history before the rehearsal cutoff, or no BTYD that converges
on the customers known then, ``rehearsal_model``) only the in-sample scatter is there, which does not
see extrapolation error (``Rehearsal.none``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats

from clv_platform.models import btyd
from clv_platform.models.seasonality import SeasonalIndex, seasonal_index
from clv_platform.transforms.order_gaps import OrderGap, touches_stretches, transaction_stretches
from clv_platform.models.total_interval import Z80  # one constant for every 80 % interval (the CLV total's too)

TOTAL_DAYS = (30, 90, 365)
HISTORY_DAYS = 730
"""New-customer history fitted: the last two years (older years say little about today's acquisition)."""

TREND_HOLD_YEARS = 0.5
"""The fitted acquisition trend is extrapolated for half a year, then held flat (no runaway growth)."""

YOUNG_TREND_HALF_LIFE_DAYS = 91.0
"""Under a year of history the acquisition trend is fitted with day weights halving every quarter
back from the cutoff: the slope extrapolated is the recent one (a young store's growth slows)."""


@dataclass(frozen=True)
class Period:
    """A forecast window: days ``start`` .. ``end`` inclusive, both after the cutoff."""

    label: str
    kind: str  # "month" or "total"
    start: date
    end: date

    def offsets(self, cutoff: date) -> tuple[int, int]:
        """(days from the cutoff to the day before ``start``, days to ``end``)."""
        return (self.start - cutoff).days - 1, (self.end - cutoff).days


def forecast_periods(cutoff: date, months: int = 12, totals: tuple[int, ...] = TOTAL_DAYS) -> list[Period]:
    """Twelve consecutive one-month periods after ``cutoff`` plus the 30/90/365-day totals.

    Period k is (C + (k-1) months, C + k months]; when C is a month end the periods are the
    calendar months after it (the backtest cuts at month ends so they match monthly actuals).
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    month_end = cutoff.is_month_end
    ends = [
        (cutoff + pd.offsets.MonthEnd(k)) if month_end else (cutoff + pd.DateOffset(months=k))
        for k in range(0, months + 1)
    ]
    ends[0] = cutoff
    periods = [
        Period(f"M{k:02d}", "month", (ends[k - 1] + pd.Timedelta(days=1)).date(), ends[k].date())
        for k in range(1, months + 1)
    ]
    periods += [
        Period(f"{days}d", "total", (cutoff + pd.Timedelta(days=1)).date(), (cutoff + pd.Timedelta(days=days)).date())
        for days in totals
    ]
    return periods


# ----------------------------------------------------------------------------- existing customers
def _expected_purchases_at(model: btyd.BTYDModel, summary: pd.DataFrame, weeks: np.ndarray) -> np.ndarray:
    """E_i[X(t)] for every customer (rows) and every operational time t (columns).

    E[X(t)] depends on (frequency, recency, T) only, so it is evaluated once per distinct triple
    (a store's one-time buyers share a few hundred) and given to every customer who has it.
    """
    keys = summary[["frequency", "recency", "T"]].astype(float).reset_index(drop=True)
    first, inverse = btyd.distinct_rows(keys, list(keys.columns))
    triples = keys.iloc[first].reset_index(drop=True)
    # every time in one pass (BTYDModel.expected_purchases_at: quadrature nodes shared by all t)
    out = model.expected_purchases_at(triples, np.clip(np.asarray(weeks, dtype=float), 0.0, None))
    return np.nan_to_num(out)[inverse]


def _spend_scale(model: btyd.BTYDModel, summary: pd.DataFrame, expected_h: np.ndarray,
                 predicted_spend: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """(spend per expected purchase, order value) per customer.

    Without per-customer predictions the spend per purchase is the Gamma-Gamma order value; with
    them it is ``predicted / E[X(tau(H))]`` so the customer's spend by H equals the prediction.
    """
    aov = np.asarray(model.expected_average_order_value(summary), dtype=float)
    if predicted_spend is None:
        return aov, aov
    predicted = predicted_spend.reindex(summary.index).fillna(0.0).to_numpy(dtype=float)
    per_purchase = np.where(expected_h > 0, predicted / np.where(expected_h > 0, expected_h, 1.0), 0.0)
    return per_purchase, aov


def customer_expected_spend(
    summary: pd.DataFrame, model: btyd.BTYDModel, cutoff: date, days: int, season: SeasonalIndex,
    predicted_spend: pd.Series | None = None, horizon_days: int = 365,
) -> pd.Series:
    """Per-customer expected spend in the ``days`` after the cutoff (the spreading rule of the module).

    A customer whose model expectation over H is 0 but who has a prediction gets it linearly in
    calendar time (``predicted * days / H``).
    """
    weeks = season.operational_weeks(cutoff, np.array([days, horizon_days]))
    expected = _expected_purchases_at(model, summary, weeks)
    per_purchase, _ = _spend_scale(model, summary, expected[:, 1], predicted_spend)
    spend = expected[:, 0] * per_purchase
    if predicted_spend is not None:
        predicted = predicted_spend.reindex(summary.index).fillna(0.0).to_numpy(dtype=float)
        spend = np.where(expected[:, 1] > 0, spend, predicted * days / horizon_days)
    return pd.Series(spend, index=summary.index, name=f"expected_spend_{days}d")


def existing_customer_forecast(
    summary: pd.DataFrame, model: btyd.BTYDModel, cutoff: date, periods: list[Period], season: SeasonalIndex,
    predicted_spend: pd.Series | None = None, horizon_days: int = 365, error_scale: float = 0.0,
) -> pd.DataFrame:
    """Expected revenue of the customers in ``summary`` per period, with variance and 80 % bounds.

    ``error_scale`` is the rehearsal's relative error per sqrt(month) of horizon (see ``rehearse``); the
    systematic sd of a period is ``_relative_sd`` (that scale times ``REHEARSAL_T_FACTOR``).
    A ``summary`` with a ``customers`` column is grouped: each row stands for that many customers
    with the same (frequency, recency, T, monetary), and ``predicted_spend`` of a row is the sum of
    their predictions. Every quantity below is a sum over customers, linear in each customer's
    prediction, so the grouped rows give the per-customer result (the nightly groups in SQL).
    An ``alive_customers`` column (the row's sum of served p_alive / the BTYD's, where
    scores/customer_clv lowered p_alive: ``clv.reconcile_alive``) weighs the expected purchases
    instead of the customer count: E[X(t)] is P(alive) x an alive customer's for every t, so they
    add up to the scores' expected purchases. The spend is the predictions' and does not change.
    """
    offsets = sorted({0, horizon_days, *[o for p in periods for o in p.offsets(cutoff)]})
    position = {o: j for j, o in enumerate(offsets)}
    weeks = season.operational_weeks(cutoff, np.array(offsets))
    expected = _expected_purchases_at(model, summary, weeks)
    expected_h = expected[:, position[horizon_days]]
    per_purchase, aov = _spend_scale(model, summary, expected_h, predicted_spend)
    customers = (summary["customers"].to_numpy(dtype=float) if "customers" in summary
                 else np.ones(len(summary)))
    alive = (summary["alive_customers"].fillna(summary.get("customers", 1.0)).to_numpy(dtype=float)
             if "alive_customers" in summary else customers)
    linear = np.zeros(len(summary), dtype=bool)
    predicted = np.zeros(len(summary))
    if predicted_spend is not None:
        predicted = predicted_spend.reindex(summary.index).fillna(0.0).to_numpy(dtype=float)
        linear = expected_h <= 0
    else:
        per_purchase = per_purchase * customers  # the order value of one customer, times the row's customers
    cv2 = _order_value_cv2(model)
    rows = []
    for period in periods:
        lo, hi = period.offsets(cutoff)
        purchases = expected[:, position[hi]] - expected[:, position[lo]]
        spend = np.where(linear, predicted * (hi - lo) / horizon_days, purchases * per_purchase)
        # compound Poisson with the customer's order value v: spend S = N v, Var = E[N] v^2 (1 + CV^2)
        # = S v (1 + CV^2). A prediction above the BTYD's means more orders of value v, not bigger ones.
        variance = float(np.sum(spend * aov * (1.0 + cv2)))
        mean = float(spend.sum())
        variance += (_relative_sd(season.relative_sd, error_scale, period, cutoff) * mean) ** 2
        rows.append(_bounds(period, "existing", mean, variance,
                            expected_purchases=float((purchases * alive).sum())))
    return pd.DataFrame(rows)


DAYS_PER_MONTH = 365.25 / 12


REHEARSALS = 1
"""Rehearsals behind the systematic term: one forecast made ``REHEARSAL_MONTHS`` before the cutoff."""
REHEARSAL_T_FACTOR = float(stats.t.ppf(0.9, REHEARSALS)) / Z80
"""t(0.9, n) / z(0.9) with n = ``REHEARSALS``: the rehearsal's error scale is *estimated* from one
forecast (its six monthly errors share that forecast's level, so they are one draw of the method's
error, not six), so its 80 % quantile is Student's t with n = 1 (3.078), not the normal 1.2816 of a
known sd; the sd entering the normal bounds is the scale times 3.078 / 1.2816 = 2.40. The same rule
as the CLV store total's (``models.total_interval``: t(0.9, n) x rms of n out-of-sample errors),
fixed before its coverage was measured (``benchmarks/interval_agreement.py``, README)."""


def _relative_sd(in_sample: float, error_scale: float, period: Period, cutoff: date) -> float:
    """Systematic relative error (sd) of a period: the larger of the in-sample scatter and the
    rehearsal's error scale grown with the square root of the horizon (months to the middle of the
    period), times ``REHEARSAL_T_FACTOR`` (one rehearsal is one draw of the error, not its known sd)."""
    lo, hi = period.offsets(cutoff)
    months = (lo + hi) / 2.0 / DAYS_PER_MONTH
    return max(in_sample, REHEARSAL_T_FACTOR * error_scale * math.sqrt(max(months, 0.5)))


def interval_rule(in_sample: float, rehearsal: "Rehearsal", part: str = "existing") -> str:
    """What the systematic term of a part's 80 % interval rests on, in words (asset metadata)."""
    scale = rehearsal.existing_scale if part == "existing" else rehearsal.new_scale
    if rehearsal.cutoff is None:
        return (f"in-sample scatter only ({in_sample:.4f}): no rehearsal (less than {MIN_REHEARSAL_HISTORY_DAYS} days "
                f"of history before the rehearsal cutoff, or too few customers then for a BTYD fit), so no "
                f"extrapolation error is in the interval")
    return (f"systematic sd = larger of the in-sample scatter {in_sample:.4f} and {REHEARSAL_T_FACTOR:.3f} "
            f"(t(0.9, {REHEARSALS}) {REHEARSAL_T_FACTOR * Z80:.3f} / 1.282: one rehearsal) x rehearsal scale "
            f"{scale:.4f} (forecast from {rehearsal.cutoff}) x sqrt(months to the middle of the period)")


def _order_value_cv2(model: btyd.BTYDModel) -> float:
    """Squared CV of one order's value around the customer's mean: 1/p of the Gamma-Gamma fit."""
    fitter = model.spend.fitter
    if fitter is None:
        return 0.0
    return 1.0 / float(fitter.params_["p"])


def log_bounds(mean, sd):
    """80 % bounds of revenue with this mean and sd, symmetric in log space: mean x exp(-+Z80 sigma),
    sigma^2 = ln(1 + (sd / mean)^2) (the log sd of the log-normal of that mean and sd). Revenue is positive and its
    errors multiplicative (the rehearsal measures them as log(actual / forecast)); for a small CV the
    bounds are the normal mean -+ Z80 sd, for a large one the lower bound stays above 0 where the
    normal one was floored there. A mean of 0 keeps (0, Z80 sd). Scalars or arrays."""
    m = np.asarray(mean, dtype=float)
    s = np.clip(np.asarray(sd, dtype=float), 0.0, None)
    safe = np.where(m > 0, m, 1.0)
    sigma = np.sqrt(np.log1p((s / safe) ** 2))
    low = np.where(m > 0, safe * np.exp(-Z80 * sigma), 0.0)
    high = np.where(m > 0, safe * np.exp(Z80 * sigma), Z80 * s)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def sd_from_bounds(mean: float, high: float) -> float:
    """The sd ``log_bounds`` turned into ``high`` around ``mean`` (its inverse)."""
    if mean <= 0:
        return max(high, 0.0) / Z80
    sigma = math.log(max(high, mean) / mean) / Z80
    return mean * math.sqrt(math.expm1(sigma * sigma))


def _bounds(period: Period, part: str, mean: float, variance: float, **extra) -> dict:
    sd = math.sqrt(max(variance, 0.0))
    low, high = log_bounds(mean, sd)
    return {
        "period": period.label, "period_kind": period.kind, "period_start": period.start, "period_end": period.end,
        "part": part, "revenue": mean, "revenue_sd": sd, "revenue_low": low, "revenue_high": high, **extra,
    }


# ----------------------------------------------------------------------------- new customers
@dataclass(frozen=True)
class AcquisitionFit:
    """Daily new-customer forecast and the history figures behind it."""

    daily_mean: np.ndarray  # expected new customers on day 1..D after the cutoff
    dispersion: float
    relative_sd: float
    first_order_value: float
    first_order_value_var: float
    history_days: int
    weekly_history: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def first_orders(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: first purchase day and that day's spend (``first_date``, ``first_value``)."""
    daily = btyd._daily(transactions)
    first = daily.sort_values(["customer_id", "order_date"]).drop_duplicates("customer_id")
    return first.rename(columns={"order_date": "first_date", "amount": "first_value"}).reset_index(drop=True)


def _design(day_index: np.ndarray, dates: pd.DatetimeIndex, harmonics: int, trend_cap: float | None) -> np.ndarray:
    years = day_index / 365.25
    if trend_cap is not None:  # in years
        years = np.minimum(years, trend_cap)
    columns = [years]
    dow = dates.dayofweek.to_numpy()
    columns += [(dow == k).astype(float) for k in range(1, 7)]
    doy = dates.dayofyear.to_numpy() / 365.25
    for k in range(1, harmonics + 1):
        columns += [np.sin(2 * np.pi * k * doy), np.cos(2 * np.pi * k * doy)]
    return np.column_stack(columns)


def fit_acquisition(firsts: pd.DataFrame, cutoff: date, horizon_days: int,
                    gaps: list[OrderGap] = ()) -> AcquisitionFit:
    """Poisson regression of daily new customers: trend + day of week + yearly Fourier terms.

    Two years of history or more: trend + 3 yearly harmonics; one to two years: 2 harmonics and no
    trend; less than a year: trend only, fitted with weights halving every
    ``YOUNG_TREND_HALF_LIFE_DAYS`` back from the cutoff. An evenly weighted log-linear trend carried
    a young store's early climb (a launch, then a plateau) into the next six months: on an
    Olist-shaped store of growing, slowing acquisition the backtest forecast at 7 and 10 months of
    history read +135 % and +86 % over the year (MAPE 1.28 and 0.83; 0.89 and 0.47 weighted), and
    the 9-month one of a store of one-time buyers 0.154 (0.112). The weekly dispersion (Pearson
    chi-square / dof, at least 1) widens the interval of the counts. The days of ``gaps`` (stretches
    without orders the store's rate cannot explain, ``transforms.order_gaps``) are unobserved, not
    days without new customers: they weigh nothing in the fit, and the weeks and months that hold
    them are left out of the dispersion and the monthly spread (the autumn-ramp store without
    February-March 2011: 4.39 new customers a day at 2011-05-31 with them, 3.95 without, 3.83 with
    the whole file).
    """
    from sklearn.linear_model import PoissonRegressor

    cutoff_ts = pd.Timestamp(cutoff).normalize()
    firsts = firsts[firsts["first_date"] <= cutoff_ts]
    if firsts.empty:
        raise ValueError("no customer has ordered on or before the cutoff: nothing to forecast from")
    begin = max(firsts["first_date"].min(), cutoff_ts - pd.Timedelta(days=HISTORY_DAYS - 1))
    days = pd.date_range(begin, cutoff_ts, freq="D")
    counts = firsts.groupby("first_date").size().reindex(days, fill_value=0).to_numpy(dtype=float)
    span = len(days)
    # A trend and a yearly pattern can only be told apart with two years: with one, the fitted
    # trend would reappear as a jump at the start of the next year's pattern.
    harmonics = 3 if span >= 728 else (2 if span >= 365 else 0)
    with_trend = span >= 728 or span < 365
    t = (days - cutoff_ts).days.to_numpy(dtype=float) * (1.0 if with_trend else 0.0)
    x = _design(t, days, harmonics, None)
    unobserved = touches_stretches(list(gaps), days, days)
    weights = None
    if with_trend and harmonics == 0:
        weights = 0.5 ** ((cutoff_ts - days).days.to_numpy(dtype=float) / YOUNG_TREND_HALF_LIFE_DAYS)
    if unobserved.any():
        weights = np.where(unobserved, 0.0, 1.0 if weights is None else weights)
    if weights is not None:
        weights *= (~unobserved).sum() / weights.sum()
    reg = PoissonRegressor(alpha=1e-6, max_iter=3000).fit(x, counts, sample_weight=weights)
    fitted = reg.predict(x)

    future = pd.date_range(cutoff_ts + pd.Timedelta(days=1), periods=horizon_days, freq="D")
    tf = (future - cutoff_ts).days.to_numpy(dtype=float) * (1.0 if with_trend else 0.0)
    daily_mean = reg.predict(_design(tf, future, harmonics, TREND_HOLD_YEARS))

    weekly = pd.DataFrame({"day": days, "actual": counts, "fitted": fitted, "unobserved": unobserved})
    weekly["week"] = (np.arange(span)[::-1] // 7)  # complete weeks counted back from the cutoff
    weekly = weekly.groupby("week").agg(start=("day", "min"), actual=("actual", "sum"), fitted=("fitted", "sum"),
                                        days=("day", "size"), unobserved=("unobserved", "any"))
    weekly = weekly[(weekly["days"] == 7) & ~weekly["unobserved"]].drop(columns="unobserved").sort_values("start")
    dof = max(len(weekly) - x.shape[1] - 1, 1)
    pearson = float((((weekly["actual"] - weekly["fitted"]) ** 2) / weekly["fitted"].clip(lower=1e-9)).sum() / dof)
    dispersion = max(1.0, pearson)

    monthly = pd.DataFrame({"month": days.to_period("M"), "actual": counts, "fitted": fitted,
                            "unobserved": unobserved}).groupby("month").agg(
        actual=("actual", "sum"), fitted=("fitted", "sum"), days=("actual", "size"), unobserved=("unobserved", "any"))
    monthly = monthly[(monthly["days"] >= 28) & (monthly["fitted"] > 0) & ~monthly["unobserved"]]
    relative_sd = 0.0
    if len(monthly) >= 3:
        log_error = np.log(monthly["actual"].clip(lower=0.5) / monthly["fitted"])
        relative_sd = float(math.sqrt(max(0.0, float(np.mean(log_error**2) - np.mean(1.0 / monthly["fitted"])))))

    recent = firsts[firsts["first_date"] > cutoff_ts - pd.Timedelta(days=365)]
    values = (recent if len(recent) >= 20 else firsts)["first_value"].to_numpy(dtype=float)
    return AcquisitionFit(
        daily_mean=np.asarray(daily_mean, dtype=float),
        dispersion=dispersion,
        relative_sd=relative_sd,
        first_order_value=float(values.mean()),
        first_order_value_var=float(values.var()) if len(values) > 1 else 0.0,
        history_days=span,
        weekly_history=weekly.reset_index(drop=True),
    )


def new_customer_forecast(
    acquisition: AcquisitionFit, model: btyd.BTYDModel, cutoff: date, periods: list[Period], season: SeasonalIndex,
    error_scale: float = 0.0,
) -> pd.DataFrame:
    """Revenue of customers who first buy after the cutoff, per period.

    A customer arriving on day a brings the first-order value on day a and repeat spend
    ``aov * (E[X(tau(d) - tau(a))])`` by day d (unconditional BTYD expectation, population order value).
    """
    horizon = max(p.offsets(cutoff)[1] for p in periods)
    if len(acquisition.daily_mean) < horizon:
        raise ValueError(f"acquisition forecast covers {len(acquisition.daily_mean)} days, periods need {horizon}")
    arrival = np.arange(1, horizon + 1)
    mu = acquisition.daily_mean[:horizon]
    open_days = season.day_weights(cutoff, horizon)
    if (open_days == 0).any() and (mu * open_days).sum() > 0:
        # a store closed for a season: the acquisition fit reads its closures in calendar time (as
        # unobserved days it extrapolated them to 1.9e11 customers a month), so its arrivals are
        # moved onto the open days, as many as the fit expects
        mu = mu * open_days * (mu.sum() / (mu * open_days).sum())
    tau = season.operational_weeks(cutoff, np.arange(0, horizon + 1))
    aov = float(model.spend.population_mean)
    cv2 = _order_value_cv2(model)
    boundaries = sorted({o for p in periods for o in p.offsets(cutoff)})
    # cumulative repeat purchases of an arrival on day a by the end of day b (0 if b <= a)
    repeat_cum = np.zeros((horizon, len(boundaries)))
    for j, b in enumerate(boundaries):
        later = arrival < b
        age = tau[b] - tau[arrival[later]]
        if later.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                repeat_cum[later, j] = np.nan_to_num(
                    np.asarray(model.transactions.expected_number_of_purchases_up_to_time(age), dtype=float)
                )
    column = {b: j for j, b in enumerate(boundaries)}
    rows = []
    for period in periods:
        lo, hi = period.offsets(cutoff)
        arriving = (arrival > lo) & (arrival <= hi)
        repeats = repeat_cum[:, column[hi]] - repeat_cum[:, column[lo]]
        per_customer = arriving * acquisition.first_order_value + repeats * aov
        customers = float(mu[arriving].sum())
        mean = float((mu * per_customer).sum())
        # over-dispersed arrivals (each arrival brings its whole contribution) + order-value noise
        variance = acquisition.dispersion * float((mu * per_customer**2).sum())
        variance += customers * acquisition.first_order_value_var
        variance += float((mu * repeats).sum()) * aov**2 * cv2
        variance += (_relative_sd(acquisition.relative_sd, error_scale, period, cutoff) * mean) ** 2
        rows.append(_bounds(period, "new", mean, variance, expected_new_customers=customers,
                            expected_purchases=float((mu * (arriving + repeats)).sum())))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- together
def combine(existing: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per period: existing, new and total revenue, each with its 80 % interval.

    The two parts are independent, so their variances add.
    """
    keys = ["period", "period_kind", "period_start", "period_end"]
    e = existing.set_index(keys)
    n = new.set_index(keys)
    out = pd.DataFrame(index=e.index)
    for name, part in (("existing", e), ("new", n)):
        out[f"{name}_revenue"] = part["revenue"]
        out[f"{name}_revenue_low"] = part["revenue_low"]
        out[f"{name}_revenue_high"] = part["revenue_high"]
    out["total_revenue"] = e["revenue"] + n["revenue"]
    sd = np.sqrt(e["revenue_sd"] ** 2 + n["revenue_sd"] ** 2)
    out["total_revenue_low"], out["total_revenue_high"] = log_bounds(out["total_revenue"].to_numpy(), sd.to_numpy())
    out["expected_new_customers"] = n["expected_new_customers"]
    out["existing_expected_purchases"] = e["expected_purchases"]
    return out.reset_index()


def fit_purchase_model(summary: pd.DataFrame, model_name: str = btyd.BGNBD,
                       max_customers: int | None = None, penalizer: float = 0.0,
                       spend_penalizer: float = 0.0) -> btyd.BTYDModel:
    """BTYD fitted on a calibration summary (``"auto"``: the family ``btyd.fit_auto`` serves).

    ``btyd.TransactionModel`` keeps every expectation total over valid inputs, also for a
    collapsed fit, so the forecast needs no guard of its own. With ``max_customers`` a larger
    summary is fitted on that deterministic customer sample (``cap_rows``, the sample the CLV
    fits use; ``[sampling] max_btyd_fit_customers``); the parameters then forecast every customer.
    """
    if max_customers and len(summary) > max_customers:
        from clv_platform.models.clv.windows import cap_rows

        ids = summary.index.to_series(name="customer_id").astype(str).reset_index(drop=True)
        summary = cap_rows(summary.reset_index(drop=True).assign(customer_id=ids), max_customers)
        summary = summary.set_index("customer_id")
    return btyd.fit_btyd(summary, model_name, penalizer, spend_penalizer)


def rehearsal_model(summary: pd.DataFrame, model_name: str = btyd.BGNBD,
                    max_customers: int | None = None) -> btyd.BTYDModel | None:
    """``fit_purchase_model`` at the rehearsal cutoff, or None when it does not converge with any
    penalizer (a tiny store: two one-time buyers six months back): then there is no rehearsal, as
    with too short a history, instead of a failed forecast."""
    try:
        return fit_purchase_model(summary, model_name, max_customers)
    except btyd.ConvergenceError:
        return None


REHEARSAL_MONTHS = 6
"""How far back the rehearsal forecast is made (its errors scale the intervals)."""
MIN_REHEARSAL_HISTORY_DAYS = 120


@dataclass(frozen=True)
class Rehearsal:
    """Out-of-sample errors of the same method on the store's own recent past."""

    cutoff: date | None
    existing_scale: float
    new_scale: float
    months: int

    @staticmethod
    def none() -> "Rehearsal":
        return Rehearsal(None, 0.0, 0.0, 0)


def rehearsal_cutoff(cutoff: date, months: int = REHEARSAL_MONTHS) -> date:
    """The cutoff ``months`` before ``cutoff``: month end to month end, else the same day of the month."""
    c = pd.Timestamp(cutoff)
    return ((c - pd.offsets.MonthEnd(months)) if c.is_month_end else (c - pd.DateOffset(months=months))).date()


def rehearse(history: pd.DataFrame, cutoff: date, model_name: str = btyd.BGNBD,
             months: int = REHEARSAL_MONTHS, max_fit_customers: int | None = None) -> Rehearsal:
    """Forecast from ``months`` before the cutoff with the data up to then, compare with what came.

    The in-sample scatter cannot see how the purchase model and the acquisition trend drift when
    extrapolated; this can (``rehearsal_errors``). With less than ``MIN_REHEARSAL_HISTORY_DAYS`` of
    history before the rehearsal cutoff there is none. The asset's refit makes the same forecast
    from DuckDB (``marts.forecast_refit``); both end in ``rehearsal_errors``.
    """
    rc = rehearsal_cutoff(cutoff, months)
    dates = pd.to_datetime(history["order_date"])
    if (pd.Timestamp(rc) - dates.min()).days < MIN_REHEARSAL_HISTORY_DAYS:
        return Rehearsal.none()
    summary = btyd.summarize(history[dates <= pd.Timestamp(rc)], rc)
    model = rehearsal_model(summary, model_name, max_fit_customers)
    if model is None:
        return Rehearsal.none()
    past = forecast_revenue(history, rc, model=model, summary=summary, model_name=model_name, months=months,
                            with_rehearsal=False, max_fit_customers=max_fit_customers)
    periods = [p for p in forecast_periods(rc, months) if p.kind == "month"]
    return rehearsal_errors(past.table, period_actuals(history, periods, rc), periods, rc)


def rehearsal_errors(table: pd.DataFrame, actual: pd.DataFrame, periods: list[Period], rc: date) -> Rehearsal:
    """The error scale s per part of the forecast ``table`` made at ``rc`` against the ``actual`` revenue
    per period (``period_actuals``), fitted as |log(actual / forecast)| ~ s * sqrt(h) over the
    rehearsal months h = 1..months (s^2 = mean((log error^2 - relative purchase noise^2) / h)).
    A rehearsal with no month where both the forecast and the actual revenue are positive measured
    nothing (a store whose few buyers bought again only after the cutoff): it is no rehearsal, not a
    scale of 0 that the interval rule would report as measured."""
    actual = actual.set_index("period")
    table = table.set_index("period")
    scales, scored = {}, 0
    for part, column in (("existing", "actual_existing_revenue"), ("new", "actual_new_revenue")):
        ratios = []
        for h, p in enumerate(periods, start=1):
            predicted, observed = float(table.loc[p.label, f"{part}_revenue"]), float(actual.loc[p.label, column])
            if predicted > 0 and observed > 0:
                # the purchase noise the interval has anyway is not part of the systematic error
                noise_sd = sd_from_bounds(predicted, float(table.loc[p.label, f"{part}_revenue_high"]))
                ratios.append(max(0.0, math.log(observed / predicted) ** 2 - (noise_sd / predicted) ** 2) / h)
        scales[part] = math.sqrt(float(np.mean(ratios))) if ratios else 0.0
        scored += len(ratios)
    if not scored:
        return Rehearsal.none()
    return Rehearsal(rc, scales["existing"], scales["new"], len(periods))


@dataclass
class RevenueForecast:
    """The forecast table plus the fitted pieces (for metadata and the backtest)."""

    table: pd.DataFrame
    season: SeasonalIndex
    acquisition: AcquisitionFit
    model: btyd.BTYDModel
    cutoff: date
    rehearsal: Rehearsal = field(default_factory=Rehearsal.none)


def forecast_revenue(
    transactions: pd.DataFrame | None,
    cutoff: date,
    model: btyd.BTYDModel | None = None,
    summary: pd.DataFrame | None = None,
    predicted_spend: pd.Series | None = None,
    horizon_days: int = 365,
    model_name: str = btyd.BGNBD,
    months: int = 12,
    with_rehearsal: bool = True,
    season: SeasonalIndex | None = None,
    rehearsal: Rehearsal | None = None,
    firsts: pd.DataFrame | None = None,
    max_fit_customers: int | None = None,
    gaps: list[OrderGap] | None = None,
) -> RevenueForecast:
    """The whole forecast from transactions (customer_id, order_date, amount) up to ``cutoff``.

    ``summary``/``model`` default to the BTYD summary and fit at the cutoff; ``predicted_spend``
    (per customer over ``horizon_days``) defaults to the BTYD expected spend. Transactions after
    the cutoff are ignored, so a backtest can pass the whole history. ``with_rehearsal`` widens
    the intervals by the errors of the same forecast made six months earlier (``rehearse``).

    ``max_fit_customers`` caps the customers a BTYD fitted here sees (``fit_purchase_model``).
    ``season``, ``rehearsal`` and ``firsts`` (``first_orders`` up to the cutoff) may come from an
    earlier fit or from SQL; with all of them and ``summary``/``model`` given, ``transactions`` may be
    None (the nightly run reuses the week's seasonality and rehearsal errors and never loads every order).
    ``gaps``: the stretches without orders seen at the cutoff (``fit_acquisition``); by default those
    of ``transactions`` (none without them).
    """
    cutoff = pd.Timestamp(cutoff).normalize().date()
    history = None
    if transactions is not None:
        history = transactions[pd.to_datetime(transactions["order_date"]) <= pd.Timestamp(cutoff)]
    elif summary is None or model is None or season is None or firsts is None or (with_rehearsal and rehearsal is None):
        raise ValueError("forecast_revenue without transactions needs summary, model, season, firsts and rehearsal")
    if summary is None:
        summary = btyd.summarize(history, cutoff)
    if model is None:
        model = fit_purchase_model(summary, model_name, max_fit_customers)
    if rehearsal is None:
        rehearsal = (rehearse(history, cutoff, model_name, max_fit_customers=max_fit_customers)
                     if with_rehearsal else Rehearsal.none())
    periods = forecast_periods(cutoff, months)
    if season is None:
        season = seasonal_index(history, model, cutoff)
    existing = existing_customer_forecast(summary, model, cutoff, periods, season, predicted_spend, horizon_days,
                                          rehearsal.existing_scale)
    horizon = max(p.offsets(cutoff)[1] for p in periods)
    if gaps is None:
        gaps = transaction_stretches(history, cutoff).unobserved if history is not None and not history.empty else []
    acquisition = fit_acquisition(first_orders(history) if firsts is None else firsts, cutoff, horizon, gaps)
    new = new_customer_forecast(acquisition, model, cutoff, periods, season, rehearsal.new_scale)
    return RevenueForecast(combine(existing, new), season, acquisition, model, cutoff, rehearsal)


def monthly_actuals(transactions: pd.DataFrame, start: date | None = None, end: date | None = None) -> pd.Series:
    """Revenue per calendar month (index: first day of the month)."""
    frame = transactions.assign(order_date=pd.to_datetime(transactions["order_date"]))
    if start is not None:
        frame = frame[frame["order_date"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["order_date"] <= pd.Timestamp(end)]
    return frame.groupby(frame["order_date"].dt.to_period("M").dt.to_timestamp())["amount"].sum()


def period_actuals(transactions: pd.DataFrame, periods: list[Period], cutoff: date) -> pd.DataFrame:
    """Actual revenue per period, split into customers known at the cutoff and new ones."""
    frame = transactions.assign(order_date=pd.to_datetime(transactions["order_date"]))
    first = frame.groupby("customer_id")["order_date"].transform("min")
    known = first <= pd.Timestamp(cutoff)
    rows = []
    for p in periods:
        inside = (frame["order_date"] >= pd.Timestamp(p.start)) & (frame["order_date"] <= pd.Timestamp(p.end))
        rows.append({
            "period": p.label,
            "actual_revenue": float(frame.loc[inside, "amount"].sum()),
            "actual_existing_revenue": float(frame.loc[inside & known, "amount"].sum()),
            "actual_new_revenue": float(frame.loc[inside & ~known, "amount"].sum()),
        })
    return pd.DataFrame(rows)
