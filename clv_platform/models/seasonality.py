"""The store's month-of-year seasonality of repeat purchases (the BTYD papers' tracking plot).

The BTYD models are stationary: a customer buys at the same rate in December as in June. This
module measures what they miss, month by month: the store's actual repeat purchase days divided by
what the fitted model expects (``seasonal_index_from_days``), smoothed by yearly harmonics. Two
users: the revenue forecast spreads spend over seasonal operational time
(``forecast.revenue``), and the CLV model takes the season out of its label windows and puts the
coming one back into its forecast (``models.clv.season``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from clv_platform.core.sql import read_sql
from clv_platform.models import btyd
from clv_platform.transforms.order_gaps import (Stretches, in_spans, stretch_days, stretches_in_daily_counts,
                                                touches_stretches)

MIN_EXPECTED_PER_MONTH = 20.0
"""Months in which the model expects fewer repeat purchases than this do not shape the seasonal index."""


@dataclass(frozen=True)
class SeasonalIndex:
    """Month-of-year intensity of repeat purchases (mean 1) and the scatter around it."""

    index: np.ndarray  # 12 values, January first
    relative_sd: float  # systematic relative error of a month's existing-customer revenue
    months_used: int
    table: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    closed: tuple[tuple[str, str], ...] = ()
    """(first, last) day of each closed season, seen and projected (``order_gaps.Stretches.closed_ranges``):
    a day inside counts 0 (``day_weights``)."""

    @staticmethod
    def flat() -> "SeasonalIndex":
        return SeasonalIndex(np.ones(12), 0.0, 0)

    def day_weights(self, cutoff: date, horizon: int) -> np.ndarray:
        """What each day cutoff + 1 .. cutoff + ``horizon`` counts besides its month's index: 0 in a
        closed season, else 1."""
        if not self.closed:
            return np.ones(int(horizon))
        calendar = pd.date_range(pd.Timestamp(cutoff) + pd.Timedelta(days=1), periods=int(horizon), freq="D")
        return np.where(in_spans(self.closed, calendar), 0.0, 1.0)

    def operational_weeks(self, cutoff: date, days: np.ndarray) -> np.ndarray:
        """tau(d) in weeks for day offsets ``days`` after the cutoff (each day = s(month) / 7 weeks, times
        ``day_weights``)."""
        days = np.asarray(days, dtype=int)
        horizon = int(days.max(initial=0))
        if horizon <= 0:
            return np.zeros(days.shape)
        calendar = pd.date_range(pd.Timestamp(cutoff) + pd.Timedelta(days=1), periods=horizon, freq="D")
        weights = self.index[calendar.month.to_numpy() - 1] / btyd.DAYS_PER_WEEK * self.day_weights(cutoff, horizon)
        cumulative = np.concatenate([[0.0], np.cumsum(weights)])
        return cumulative[np.clip(days, 0, None)]


def purchase_days(transactions: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    """Per calendar day up to ``cutoff``: buyers whose first purchase day it is and repeat purchase days.

    ``seasonal_index`` needs nothing else from the orders; ``sql/purchase_days.sql`` (``purchase_days_sql``)
    is the same table in DuckDB (the asset's refit, the CLV training), this one serves the CSV data sets.
    """
    daily = btyd._daily(transactions)
    daily = daily[daily["order_date"] <= pd.Timestamp(cutoff).normalize()]
    first = daily.groupby("customer_id")["order_date"].transform("min")
    is_first = daily["order_date"] == first
    days = pd.DataFrame({"day": daily["order_date"], "first_buyers": is_first.astype(int),
                         "repeat_days": (~is_first).astype(int)})
    return days.groupby("day", as_index=False, sort=True)[["first_buyers", "repeat_days"]].sum()


def seasonal_index(transactions: pd.DataFrame, model: btyd.BTYDModel, cutoff: date) -> SeasonalIndex:
    """``seasonal_index_from_days`` on the transactions' ``purchase_days``."""
    return seasonal_index_from_days(purchase_days(transactions, cutoff), model, cutoff)


def purchase_day_stretches(days: pd.DataFrame, cutoff: date) -> Stretches:
    """The stretches of ``purchase_days`` (first buyers and repeat days per day) up to ``cutoff``
    (``order_gaps.stretches_in_daily_counts``)."""
    cutoff_ts = pd.Timestamp(cutoff).normalize()
    days = days[pd.to_datetime(days["day"]) <= cutoff_ts]
    return stretches_in_daily_counts(list(pd.to_datetime(days["day"])),
                                     list(days["first_buyers"] + days["repeat_days"]), cutoff_ts)


def tracking_table(days: pd.DataFrame, model: btyd.BTYDModel, cutoff: date,
                   stretches: Stretches | None = None) -> pd.DataFrame:
    """(month, actual, expected) repeat purchase days of every complete calendar month up to ``cutoff``
    (the BTYD papers' tracking plot); empty when no month is complete.

    ``days``: ``purchase_days`` (day, first_buyers, repeat_days), possibly longer than ``cutoff``
    (later days are ignored, so one table serves the cutoff and the rehearsal cutoff before it).
    The expectation is the unconditional E[X(age)] of every customer by first-purchase day (the
    fitted parameters only), so the ratio carries what the stationary model cannot: the calendar.
    A month that overlaps a stretch without purchases the store's rate cannot explain
    (``transforms.order_gaps``, on these days' purchase counts) is left out: a month missing from an
    export is no season (the autumn-ramp store without February and March lost its season, F test
    p = 0.183, and the revenue forecast's monthly error went from 0.15 to 0.83). So is a month of a
    closed season (``order_gaps.Stretches.closed``). ``stretches``: ``purchase_day_stretches`` of
    ``days`` at ``cutoff`` when the caller has them.
    """
    empty = pd.DataFrame({"month": pd.Series(dtype="datetime64[ns]"), "actual": pd.Series(dtype=float),
                          "expected": pd.Series(dtype=float)})
    cutoff_ts = pd.Timestamp(cutoff).normalize()
    days = days.assign(day=pd.to_datetime(days["day"]))
    days = days[days["day"] <= cutoff_ts]
    if days.empty:
        return empty
    cohort_days = days[days["first_buyers"] > 0]
    start = cohort_days["day"].min()
    month_starts = pd.date_range(start.to_period("M").to_timestamp() + pd.offsets.MonthBegin(1), cutoff_ts,
                                 freq="MS")
    # complete months only
    month_starts = month_starts[(month_starts + pd.offsets.MonthEnd(0)) <= cutoff_ts]
    if len(month_starts) == 0:
        return empty
    bounds = np.concatenate([(month_starts - start).days.to_numpy(),
                             [((month_starts[-1] + pd.offsets.MonthEnd(0)) - start).days + 1]])
    f = (cohort_days["day"] - start).dt.days.to_numpy(dtype=float)
    n = cohort_days["first_buyers"].to_numpy(dtype=float)
    # age at the start of boundary day b (= end of day b-1): (b - f) days, clipped at 0, in observed
    # time as the BTYD was fitted (a stretch's days inside (f, b - 1] are no days of the customer's)
    gaps = (stretches or purchase_day_stretches(days, cutoff_ts)).time_gaps
    day0 = np.datetime64(start.date(), "D")
    unseen = stretch_days(gaps, (day0 + f.astype(np.int64))[None, :], (day0 + (bounds - 1).astype(np.int64))[:, None])
    age = np.clip((bounds[:, None] - f[None, :] - 1 - unseen) / btyd.DAYS_PER_WEEK, 0.0, None)
    expected_cum = np.zeros_like(age)
    positive = age > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected_cum[positive] = np.asarray(
            model.transactions.expected_number_of_purchases_up_to_time(age[positive]), dtype=float
        )
    expected_cum = np.nan_to_num(expected_cum)
    expected = np.diff((expected_cum * n[None, :]).sum(axis=1))
    repeat_day = (days["day"] - start).dt.days.to_numpy()
    inside = repeat_day < bounds[-1]  # np.histogram's last bin is closed
    actual = np.histogram(repeat_day[inside], bins=bounds,
                          weights=days["repeat_days"].to_numpy(dtype=float)[inside])[0]
    table = pd.DataFrame({"month": month_starts, "actual": actual, "expected": expected})
    if not gaps:
        return table
    holed = touches_stretches(gaps, table["month"], table["month"] + pd.offsets.MonthEnd(0))
    return table[~holed].reset_index(drop=True)


def _closed_season_index(stretches: Stretches, table: pd.DataFrame) -> SeasonalIndex | None:
    """The season of a store closed for one every year (``order_gaps.Stretches.season_calendar``): flat
    over the open days, none over the closures seen and projected (its BTYD reads the closures as no
    customer's time, so an open day counts one day); None for a store that closes for none. Yearly
    harmonics cannot carry months of nothing: on the five-season store that closes February to
    September they were clipped to 0.3 and 3.0 and spread the next year's revenue at about 47k a
    month over the closed months (benchmarks/MEASUREMENTS.md, session 53). The scatter is of the
    open months' actual over expected (the months a closure touches are out of the table)."""
    if stretches.season_calendar is None:
        return None
    spans = stretches.closed_ranges()
    used = table[table["expected"] >= MIN_EXPECTED_PER_MONTH]
    relative_sd = 0.0
    if len(used) >= 3:
        y = np.log(used["actual"].clip(lower=1.0).to_numpy(dtype=float) / used["expected"].to_numpy(dtype=float))
        relative_sd = _systematic_sd(y - np.average(y, weights=used["expected"].to_numpy(dtype=float)), used)
    return SeasonalIndex(np.ones(12), relative_sd, len(used), table,
                         tuple((a.isoformat(), b.isoformat()) for a, b in spans))


def seasonal_index_from_days(days: pd.DataFrame, model: btyd.BTYDModel, cutoff: date) -> SeasonalIndex:
    """Actual / model-expected repeat purchase days per calendar month up to ``cutoff``
    (``tracking_table``), fitted.

    The log ratios are fitted with a level plus yearly harmonics (one below 24 usable months, two
    from then on, and up to three where each added one passes its F test, ``added_harmonics``;
    weighted by the expected count), so the index is smooth, covers months not observed yet and
    does not reproduce one year's noise; it is normalized to mean 1.
    """
    stretches = purchase_day_stretches(days, cutoff)
    table = tracking_table(days, model, cutoff, stretches)
    if table.empty:
        return SeasonalIndex.flat()
    closed = _closed_season_index(stretches, table)
    if closed is not None:
        return closed
    used = table[table["expected"] >= MIN_EXPECTED_PER_MONTH].copy()
    if len(used) < 3:
        return SeasonalIndex(np.ones(12), 0.0, len(used), table)
    used["ratio"] = used["actual"] / used["expected"]
    # log(ratio) = level + yearly harmonics, weighted by the expected count: one harmonic with less
    # than two years of months (a smooth year, also for months not seen yet), two with more, and
    # more only where each is beyond noise
    y = np.log(used["ratio"].clip(lower=1e-6).to_numpy())
    weights = used["expected"].to_numpy()
    harmonics, coef, _ = added_harmonics(used["month"].dt.month.to_numpy() - 1, np.ones((len(used), 1)), y, weights)
    design = np.column_stack([np.ones(len(used)), yearly_harmonics(used["month"].dt.month.to_numpy() - 1, harmonics)])
    shape = np.exp(yearly_harmonics(np.arange(12), harmonics) @ coef[1:])
    index = np.clip(shape / shape.mean(), 0.3, 3.0)
    return SeasonalIndex(index, _systematic_sd(y - design @ coef, used), len(used), table)


def _systematic_sd(residual: np.ndarray, used: pd.DataFrame) -> float:
    """The systematic relative error of a month's revenue: the log residuals' spread (weighted by the
    expected count) beyond what Poisson noise of the monthly counts alone would explain."""
    poisson = 1.0 / used["actual"].clip(lower=1).to_numpy(dtype=float)
    weights = used["expected"].to_numpy(dtype=float)
    return float(math.sqrt(max(0.0, float(np.average(residual**2 - poisson, weights=weights)))))


MAX_HARMONICS = 3
"""Yearly harmonics a season may have: three resolve a peak of about three months (an autumn ramp)."""
MIN_RESIDUAL_DOF = 6
"""Months left over after the fit's parameters that a further harmonic needs (the F test's power)."""


def harmonics_for(months: int) -> int:
    """Yearly harmonics a fit of ``months`` usable months starts from: one below two years, two from
    then on (``added_harmonics`` may add more)."""
    return 2 if months >= 24 else 1


def added_harmonics(month_of_year: np.ndarray, base: np.ndarray, y: np.ndarray, weights: np.ndarray,
                    test_first: bool = False, max_p: float = 0.05) -> tuple[int, np.ndarray | None, list[float]]:
    """(harmonics, coefficients of ``base`` then the harmonics, the F tests' p-values) of the weighted
    fit of ``y`` on ``base`` and yearly harmonics.

    The fit starts from ``harmonics_for`` harmonics, as one block (with ``test_first`` only if an F
    test of the block against ``base`` alone gives p < ``max_p``; else 0 harmonics and None
    coefficients). Each further harmonic, up to ``MAX_HARMONICS``, is added only if an F test against
    the fit without it gives p < ``max_p`` with ``MIN_RESIDUAL_DOF`` months left over. Measured on an
    autumn ramp (``holiday.csv`` of benchmarks/awkward_stores.py, intensity 1.35-1.75 from September
    to November): its tracking ratios were 1.41-1.80 there, one harmonic spread them into a hump of
    1.20 from August to October, two and three came closer to the true index (rms log error 0.18,
    0.095, 0.065) and each passed its test at p < 0.001 with 15-20 months (benchmarks/MEASUREMENTS.md,
    "An autumn ramp"). Where no further harmonic passes, the fit is the one before that rule."""
    n = len(y)
    first = harmonics_for(n)
    design = np.column_stack([base, yearly_harmonics(month_of_year, first)])
    dof = n - design.shape[1]
    if dof < 1 and test_first:
        return 0, None, []
    residual_before, coef = weighted_fit(design, y, weights)
    tests: list[float] = []
    if test_first:
        residual_base, _ = weighted_fit(base, y, weights)
        if residual_before <= 0:
            return 0, None, []
        p = _f_test(residual_base, residual_before, 2 * first, dof)
        tests.append(p)
        if p >= max_p:
            return 0, None, tests
    harmonics = first
    for k in range(first + 1, MAX_HARMONICS + 1):
        design = np.column_stack([base, yearly_harmonics(month_of_year, k)])
        dof = n - design.shape[1]
        if dof < MIN_RESIDUAL_DOF:
            break
        residual, fitted = weighted_fit(design, y, weights)
        if residual <= 0 or residual_before <= 0:
            break
        p = _f_test(residual_before, residual, 2, dof)
        tests.append(p)
        if p >= max_p:
            break
        harmonics, coef, residual_before = k, fitted, residual
    return harmonics, coef, tests


def _f_test(residual_without: float, residual_with: float, extra: int, dof: int) -> float:
    """p-value of the F test that ``extra`` added parameters lower the weighted residual sum of squares
    from ``residual_without`` to ``residual_with`` by more than noise (``dof`` left over with them)."""
    return float(stats.f.sf(((residual_without - residual_with) / extra) / (residual_with / dof), extra, dof))


def yearly_harmonics(month_of_year: np.ndarray, harmonics: int) -> np.ndarray:
    """cos and sin of k times each month's angle (its middle; 0 = January), k = 1..``harmonics``."""
    angle = 2 * np.pi * (np.asarray(month_of_year) + 0.5) / 12
    return np.column_stack([f(k * angle) for k in range(1, harmonics + 1) for f in (np.cos, np.sin)])


def weighted_fit(design: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """(weighted residual sum of squares, coefficients) of the least-squares fit."""
    root = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    residual = y - design @ coef
    return float(np.sum(weights * residual**2)), coef


def purchase_days_sql(conn: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """``purchase_days`` of staging.orders up to ``cutoff`` (one row per calendar day), in DuckDB."""
    return conn.execute(read_sql("clv_platform.models", "sql/purchase_days.sql"), {"cutoff": cutoff}).df()
