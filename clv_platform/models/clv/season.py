"""The CLV model's seasons: labels taken out of their season, the forecast put into the coming one.

The BTYD models under the hybrid are stationary. A BTYD fitted at a cutoff C forecasts at the
customers' average rate over the months it watched, so its forecast for the next label window is too
high after a peak season and too low before one. The hybrid learned the same thing twice over: its booster
trained on one label window's season and its level was calibrated on another's. On the demo store
(yearly peak at Black Friday) the production configuration over-forecast the first label window
after a February cutoff by 24 % (the BTYD alone by 18 %), and the level carried the peak season
into a forecast for spring and summer (benchmarks/MEASUREMENTS.md, "Seasons").

The season is the store's month-of-year index of repeat purchases against the BTYD
(``models.seasonality``, the revenue forecast's). A label window (t, t + h] of customers known at
t is divided by its season's factor S(t, t + h] / S_bar(t): the window's mean index over the mean
index the BTYD fitted at t has seen, weighted by its expected repeat purchases per month
(``ClvSeason.exposure_mean``). The boosters, the level, the blend, the point rules, the extension
factor and the serving decision then all work on labels without a season. A forecast at a
scoring cutoff t is multiplied back: the label-window part by S(t, t + h] / S_bar, the part after
it by S(t + h, t + H] / S_bar (``ClvModel.predict``).

A store closed for a season every year (``transforms.order_gaps``: a rhythm of closures of
``SEASON_LIKE_DAYS`` or more) has a season of another kind: its BTYD reads the closures as no
customer's time, so its rate is one of open days, and every day a closure holds counts 0 in the
window's mean (``closed``: the closures seen and those projected from the cycle). A window of a
year then forecasts the open days it holds; without them the BTYD of a shop open four months a year
forecast its year at +92 % from the end of a season, and the hybrid at +1,298 % (session 53).

A yearly season needs a year of months seen, and a season that is there: a store with fewer than
``[hybrid] seasonality_min_months`` usable months (12), or whose yearly harmonics do not pass an F
test against a level and trend (``season_from_table``), gets none (every factor 1) and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from clv_platform.models import btyd, seasonality
from clv_platform.transforms.order_gaps import in_spans, order_stretches

FLAT = (1.0,) * 12


@dataclass(frozen=True)
class ClvSeason:
    """Month-of-year index (January first, mean 1) and the exposure it was measured on."""

    index: tuple[float, ...]
    exposure: tuple[tuple[str, float], ...]
    """(month start, repeat purchase days the BTYD expects in it) of the complete months tracked."""
    months_used: int
    reason: str
    closed: tuple[tuple[str, str], ...] = ()
    """(first, last) day of each closed season, seen and projected (``order_gaps.Stretches.closed_ranges``):
    days that count 0 in ``mean_over``."""

    @staticmethod
    def none(reason: str, months_used: int = 0) -> "ClvSeason":
        return ClvSeason(FLAT, (), months_used, reason)

    @property
    def is_flat(self) -> bool:
        return all(v == 1.0 for v in self.index) and not self.closed

    def mean_over(self, after: date, days: int) -> float:
        """The mean index over the ``days`` days after ``after`` (a day takes its month's value, a
        day of a closed season 0)."""
        if days <= 0:
            return 1.0
        calendar = pd.date_range(pd.Timestamp(after) + pd.Timedelta(days=1), periods=int(days), freq="D")
        values = np.asarray(self.index)[calendar.month.to_numpy() - 1]
        if self.closed:
            values = np.where(in_spans(self.closed, calendar), 0.0, values)
        return float(values.mean())

    def closures_only(self) -> "ClvSeason | None":
        """The store's closed seasons without the month-of-year index (None when it closes for none):
        what the plain BTYD columns of a backtest read, whose days they are no customer's time."""
        return replace(self, index=FLAT) if self.closed else None

    def closed_windows(self, ends, days: int) -> list[date]:
        """The ends of the label windows (end - ``days``, end] that hold no open day: a closed season
        throughout, where nobody could buy and no label has a season to be taken out of."""
        if not self.closed:
            return []
        ends = sorted({pd.Timestamp(end).date() for end in ends})
        return [end for end in ends if self.mean_over(end - timedelta(days=days), days) == 0.0]

    def exposure_mean(self, at: date) -> float:
        """The index over the months the BTYD fitted at ``at`` watched, weighted by the repeat
        purchases it expects in each (the rate it learned is that mix of seasons); 1 before any."""
        at = pd.Timestamp(at)
        weights, values = [], []
        for start, expected in self.exposure:
            start = pd.Timestamp(start)
            if start + pd.offsets.MonthEnd(0) <= at:
                weights.append(expected)
                values.append(self.index[start.month - 1])
        if not weights or sum(weights) <= 0:
            return 1.0
        return float(np.average(values, weights=weights))

    def factor(self, after: date, days: int, watched_at: date) -> float:
        """What the season alone makes of the forecast over (after, after + days] of a stationary
        BTYD fitted at ``watched_at``: the window's mean index over the one that BTYD has seen."""
        if self.is_flat:
            return 1.0
        return self.mean_over(after, days) / self.exposure_mean(watched_at)

    def label_factor(self, feature_cutoff: date, days: int) -> float:
        """``factor`` of a label window (feature_cutoff, + days] of customers known at its start."""
        return self.factor(feature_cutoff, days, feature_cutoff)

    def forward(self, cutoff: date, label_days: int, horizon_days: int) -> tuple[float, float]:
        """(factor of the label-window part, factor of the part after it) of a forecast made at
        ``cutoff`` over ``horizon_days``; the part after h is empty (factor of the first) for H <= h."""
        within = self.factor(cutoff, min(label_days, horizon_days), cutoff)
        if horizon_days <= label_days:
            return within, within
        return within, self.factor(cutoff + timedelta(days=label_days), horizon_days - label_days, cutoff)

    def as_dict(self) -> dict:
        return {"index": [round(float(v), 6) for v in self.index],
                "exposure": [[m, round(float(e), 3)] for m, e in self.exposure],
                "months_used": int(self.months_used), "reason": self.reason,
                **({"closed": [list(span) for span in self.closed]} if self.closed else {})}

    @staticmethod
    def from_dict(raw: dict | None) -> "ClvSeason | None":
        if not raw:
            return None
        return ClvSeason(tuple(float(v) for v in raw["index"]), tuple((str(m), float(e)) for m, e in raw["exposure"]),
                         int(raw.get("months_used", 0)), str(raw.get("reason", "")),
                         tuple((str(a), str(b)) for a, b in raw.get("closed", ())))


def with_closures(season: ClvSeason, conn: duckdb.DuckDBPyConnection, cutoff: date) -> ClvSeason:
    """``season`` with the store's closed seasons as seen at ``cutoff`` (``order_gaps``), and the
    reason saying so; itself when the store closes for none."""
    stretches = order_stretches(conn, until=cutoff)
    spans = stretches.closed_ranges()
    if not spans:
        return season
    calendar = stretches.season_calendar
    return replace(season, closed=tuple((a.isoformat(), b.isoformat()) for a, b in spans),
                   reason=f"{season.reason}; closed for a season: {calendar.describe().split(':')[0]}, "
                          "the closures' days count 0")


def closures_at(conn: duckdb.DuckDBPyConnection, cutoff: date) -> ClvSeason | None:
    """The store's closed seasons at ``cutoff`` without a month-of-year index (``with_closures``), for
    a BTYD served without a training run's season (the history too short to train); None when it
    closes for none."""
    season = with_closures(ClvSeason.none("no month-of-year season: no training run"), conn, cutoff)
    return season if season.closed else None


def fit_season(conn: duckdb.DuckDBPyConnection, cutoff: date, model: btyd.BTYDModel | None,
               min_months: int, max_p: float = 0.05) -> ClvSeason:
    """The store's season at ``cutoff`` against ``model`` (a BTYD fit of the training run): staging's
    purchase days up to the cutoff (``seasonality.purchase_days_sql``), tracked month by month."""
    if min_months <= 0:
        season = ClvSeason.none("disabled ([hybrid] seasonality_min_months = 0)")
    elif model is None:
        season = ClvSeason.none("no BTYD fit at the validation window's feature cutoff to track the months against")
    else:
        season = season_from_table(seasonality.tracking_table(seasonality.purchase_days_sql(conn, cutoff), model,
                                                              cutoff), min_months, max_p)
    return with_closures(season, conn, cutoff)


def season_from_table(table: pd.DataFrame, min_months: int, max_p: float = 0.05) -> ClvSeason:
    """``ClvSeason`` of a tracking table (month, actual, expected repeat purchase days): none below
    ``min_months`` usable months or when the season is not significant.

    The log ratios actual / expected are fitted by weighted least squares (weights the expected
    counts) with a level, a linear trend and yearly harmonics (one below 24 months, two from then on),
    kept only if an F test against level and trend alone gives p < ``max_p``; a further harmonic, up
    to three, is added only if its own F test against the fit without it passes too
    (``seasonality.added_harmonics``). Why the trend: a BTYD whose dropout is a little off drifts
    against the months it tracks, and over 15-18 months a drift looks like half a sine. Measured on
    stores without a season (``benchmarks/awkward_stores.py`` one-time store, the Online-Retail-shaped export of
    ``tools/backtest_csvs.py``): the revenue forecast's index (no trend) read 0.93-1.07 and 0.97-1.04
    into them and the CLV backtests moved by 8-12 points of total; with the trend their seasons
    have p = 0.40 and 0.24, the demo store's (a yearly amplitude of 0.15) p = 0.0005 at 15 months.
    Why the added harmonics (since 7 December 2026; one below two years before, two from then on): a
    store whose year peaks in September to November (``holiday.csv`` of awkward_stores, intensity
    1.35-1.75 there against 0.75-0.95 the rest of the year) tracked 1.41, 1.56 and 1.80 in those
    months, and one harmonic spread that into a hump of 1.20 from August to October (rms log error
    against the true index 0.18; two harmonics 0.095, three 0.065, each with p < 0.001 at 15-20
    months). The trend itself is not carried into the forecast: the level and the extension factor
    measure the BTYD's errors over time.
    """
    usable = table[table["expected"] >= seasonality.MIN_EXPECTED_PER_MONTH]
    used = int(len(usable))
    if used < min_months:
        return ClvSeason.none(f"{used} usable months tracked by the cutoff, fewer than {min_months}: "
                              "a yearly season needs a year of months seen", used)
    months = pd.to_datetime(usable["month"])
    y = np.log(usable["actual"].clip(lower=1.0).to_numpy(dtype=float) / usable["expected"].to_numpy(dtype=float))
    weights = usable["expected"].to_numpy(dtype=float)
    years = (months - months.min()).dt.days.to_numpy(dtype=float) / 365.25
    plain = np.column_stack([np.ones(used), years])
    harmonics, coef, tests = seasonality.added_harmonics(months.dt.month.to_numpy() - 1, plain, y, weights,
                                                         test_first=True, max_p=max_p)
    if not tests:
        return ClvSeason.none(f"{used} usable months: too few to test a season against", used)
    if harmonics == 0:
        return ClvSeason.none(f"no season in {used} tracked months (F test of the yearly harmonics against a "
                              f"level and trend: p = {tests[0]:.3f}, at least {max_p:g})", used)
    shape = np.exp(seasonality.yearly_harmonics(np.arange(12), harmonics) @ coef[plain.shape[1]:])
    values = tuple(float(v) for v in np.clip(shape / shape.mean(), 0.3, 3.0))
    exposure = tuple((pd.Timestamp(m).date().isoformat(), float(e)) for m, e in zip(table["month"], table["expected"]))
    return ClvSeason(values, exposure, used,
                     f"month-of-year index from {used} tracked months, {harmonics} yearly harmonic"
                     f"{'s' if harmonics > 1 else ''} (F tests p = {', '.join(f'{p:.4f}' for p in tests)}; "
                     f"lowest {min(values):.3f}, highest {max(values):.3f})")


def deseasonalize(frame: pd.DataFrame, season: ClvSeason | None, label_days: int) -> pd.DataFrame:
    """Training rows with each window's ``label_spend`` divided by its season's factor
    (``label_factor`` at the window's feature cutoff, ``window_end`` - h)."""
    if season is None or season.is_flat or frame.empty:
        return frame
    ends = frame["window_end"]
    factors = {end: season.label_factor((pd.Timestamp(end) - pd.Timedelta(days=label_days)).date(), label_days)
               for end in ends.drop_duplicates()}
    return frame.assign(label_spend=frame["label_spend"].to_numpy(dtype=float) / ends.map(factors).to_numpy(dtype=float))
