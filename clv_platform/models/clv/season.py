"""The CLV model's seasons: labels taken out of their season, the forecast put into the coming one.

The BTYD models under the hybrid are stationary. A BTYD fitted at a cutoff C buys at the customers'
average rate over what it watched, so its forecast for the next label window is too high after a
peak season and too low before one. The hybrid learned the same thing twice over: its booster
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

A yearly season needs a year of months seen: a store with fewer than ``[hybrid]
seasonality_min_months`` usable months (12) gets none (every factor 1) and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from clv_platform.models import btyd, seasonality

FLAT = (1.0,) * 12


@dataclass(frozen=True)
class ClvSeason:
    """Month-of-year index (January first, mean 1) and the exposure it was measured on."""

    index: tuple[float, ...]
    exposure: tuple[tuple[str, float], ...]
    """(month start, repeat purchase days the BTYD expects in it) of the complete months tracked."""
    months_used: int
    reason: str

    @staticmethod
    def none(reason: str, months_used: int = 0) -> "ClvSeason":
        return ClvSeason(FLAT, (), months_used, reason)

    @property
    def is_flat(self) -> bool:
        return all(v == 1.0 for v in self.index)

    def mean_over(self, after: date, days: int) -> float:
        """The mean index over the ``days`` days after ``after`` (a day takes its month's value)."""
        if days <= 0:
            return 1.0
        calendar = pd.date_range(pd.Timestamp(after) + pd.Timedelta(days=1), periods=int(days), freq="D")
        return float(np.asarray(self.index)[calendar.month.to_numpy() - 1].mean())

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

    def label_factor(self, feature_cutoff: date, days: int) -> float:
        """What the season alone makes of a stationary forecast over (feature_cutoff, + days]."""
        if self.is_flat:
            return 1.0
        return self.mean_over(feature_cutoff, days) / self.exposure_mean(feature_cutoff)

    def forward(self, cutoff: date, label_days: int, horizon_days: int) -> tuple[float, float]:
        """(factor of the label-window part, factor of the part after it) of a forecast made at
        ``cutoff`` over ``horizon_days``; the part after h is empty (factor of the first) for H <= h."""
        if self.is_flat:
            return 1.0, 1.0
        bar = self.exposure_mean(cutoff)
        first = min(label_days, horizon_days)
        within = self.mean_over(cutoff, first) / bar
        if horizon_days <= label_days:
            return within, within
        return within, self.mean_over(cutoff + timedelta(days=label_days), horizon_days - label_days) / bar

    def as_dict(self) -> dict:
        return {"index": [round(float(v), 6) for v in self.index],
                "exposure": [[m, round(float(e), 3)] for m, e in self.exposure],
                "months_used": int(self.months_used), "reason": self.reason}

    @staticmethod
    def from_dict(raw: dict | None) -> "ClvSeason | None":
        if not raw:
            return None
        return ClvSeason(tuple(float(v) for v in raw["index"]), tuple((str(m), float(e)) for m, e in raw["exposure"]),
                         int(raw.get("months_used", 0)), str(raw.get("reason", "")))


def fit_season(conn: duckdb.DuckDBPyConnection, cutoff: date, model: btyd.BTYDModel | None,
               min_months: int) -> ClvSeason:
    """The store's season at ``cutoff`` against ``model`` (a BTYD fit of the training run): staging's
    purchase days up to the cutoff (``seasonality.purchase_days_sql``), tracked month by month."""
    if min_months <= 0:
        return ClvSeason.none("disabled ([hybrid] seasonality_min_months = 0)")
    if model is None:
        return ClvSeason.none("no BTYD fit at the validation window's feature cutoff to track the months against")
    index = seasonality.seasonal_index_from_days(seasonality.purchase_days_sql(conn, cutoff), model, cutoff)
    return season_from_index(index, min_months)


def season_from_index(index: seasonality.SeasonalIndex, min_months: int) -> ClvSeason:
    """``ClvSeason`` of a tracked seasonal index, none below ``min_months`` usable months."""
    used = int(index.months_used)
    if used < min_months:
        return ClvSeason.none(f"{used} usable months tracked by the cutoff, fewer than {min_months}: "
                              "a yearly season needs a year of months seen", used)
    table = index.table
    exposure = tuple((pd.Timestamp(m).date().isoformat(), float(e)) for m, e in zip(table["month"], table["expected"]))
    values = tuple(float(v) for v in index.index)
    low, high = min(values), max(values)
    return ClvSeason(values, exposure, used,
                     f"month-of-year index from {used} tracked months (lowest {low:.3f}, highest {high:.3f})")


def deseasonalize(frame: pd.DataFrame, season: ClvSeason | None, label_days: int) -> pd.DataFrame:
    """Training rows with each window's ``label_spend`` divided by its season's factor
    (``label_factor`` at the window's feature cutoff, ``window_end`` - h)."""
    if season is None or season.is_flat or frame.empty:
        return frame
    ends = frame["window_end"]
    factors = {end: season.label_factor((pd.Timestamp(end) - pd.Timedelta(days=label_days)).date(), label_days)
               for end in ends.drop_duplicates()}
    return frame.assign(label_spend=frame["label_spend"].to_numpy(dtype=float) / ends.map(factors).to_numpy(dtype=float))
