"""Stretches of days without a single order where the store's own rate makes that implausible.

A transaction export that misses a month (a monthly file left out, a sheet not exported, a fetch
that skipped a range) looks to every model like a month in which all customers stopped buying: the
CLV model's label windows that overlap it learn a lower level, and the forecast follows. A store
that closes for a fortnight at Christmas looks the same. Only the merchant can tell the two apart,
so the platform names such stretches (a warning check on `staging.orders`, the backtest's `input`
block and report) and keeps them out of what would learn them as a habit: the season's tracking
table leaves their months out (`models.seasonality`), a hybrid CLV or a next-purchase model
trained on windows that hold one is not served (the BTYD and its fallback are, saying why), and the
BTYD counts a customer's recency and age in observed time, without the stretch's days
(``stretch_days``; `features.OBSERVED_COLUMNS`, `models.btyd.summarize`).

A run of at least ``MIN_GAP_DAYS`` consecutive days without an order is named when orders arriving
at the store's rate around it (the ``CONTEXT_DAYS`` before and after) would leave that many days
empty with a probability below ``MAX_EMPTY_PROBABILITY`` (Poisson: exp(-rate x days)). A store with
one order a week never gets a fortnight flagged; one with forty a day gets it after two weeks.

Such runs that recur in a rhythm are the store's calendar, not missing records (``in_rhythm``): a
wholesaler that dates every invoice on the first of the month, a brand that sells in a drop of a
few days each month. Between its order days nobody could buy, as in any week's night, and the same
holds in the months to come, so the models keep calendar time there (counting those days as
unobserved made the BTYD forecast a drop store's year at +98 % instead of -0.3 %, because the
coming year's closed days were then counted as days to buy on; benchmarks/MEASUREMENTS.md,
session 51). They are reported (``Stretches.rhythm``), not warned about.

A rhythm whose runs are a season long (``SEASON_LIKE_DAYS``: a ski or Christmas shop closed from
February to September every year) is the exception: calendar time there reads every customer as
lapsing through each closure (the BTYD at a cutoff inside one ranked customers backwards, Gini
-0.15, and a hybrid calibrated on it was served at +1,298 % of the next year; benchmarks/MEASUREMENTS.md,
session 53). Its closures, those seen and the one under way at the cutoff, are no customer's
time (``Stretches.closed``, among the days ``order_gaps`` returns; one closure is a season when the
silence at the cutoff began a year after it, ``Stretches.under_way``), and the coming ones are
projected from its cycle (``Stretches.closed_ranges``: the calendar's year, on the usual days of its
recent closures, since a season's dates move with the weather) so the forecasts count only the open
days ahead (``models.clv.season``, ``models.seasonality``); no model is withheld over them
(``gaps_after`` is of the unobserved stretches only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

UNOBSERVED_NOTE = ("the models treat these days as unobserved (the BTYD leaves them out of each customer's time, "
                   "the season out of its months, and no model trained on windows that hold them is served), but what was bought "
                   "on them is in no total")
"""What the staging check and the backtest say the platform does with a named stretch."""

SEASON_LIKE_DAYS = 60
"""A named stretch this long may be a season the store closes for rather than missing records
(``closed_season_note``)."""
MIN_GAP_DAYS = 14
"""Shorter empty runs are weekends, public holidays and quiet spells of small stores."""
CONTEXT_DAYS = 28
"""Days before and after a run whose orders give the rate it is judged at."""
MAX_EMPTY_PROBABILITY = 1e-6
"""A run is named when orders at the surrounding rate leave it empty less often than this."""
RHYTHM_TOLERANCE = 0.2
"""Three runs in a row are a rhythm when their two start-to-start spacings, and their lengths, agree
within this share of the larger (monthly cycles of 28-31 days, drops of 24-27 empty days)."""
RHYTHM_EMPTY_SHARE = 0.5
"""Three or more runs that together hold at least this share of the store's days (first to last
order day) are its rhythm however irregular (drops every three to six weeks): missing files are a
few holes in a history, not most of it. Runs longer than ``RHYTHM_MAX_LENGTH_RATIO`` times the
median run are left out of it (a month missing from a monthly rhythm is a run twice as long)."""
RHYTHM_MAX_LENGTH_RATIO = 1.75

_DAILY_SQL = """
select order_date as day, count(*)::bigint as orders
from staging.orders
where order_date is not null and ($until is null or order_date <= $until)
group by order_date
order by order_date
"""


@dataclass(frozen=True)
class OrderGap:
    """An implausible run of days without orders, both ends included."""

    start: date
    end: date
    days: int
    orders_per_day_around: float
    orders_after: int = 0
    """Orders after the run up to the last order day."""
    last_day: date | None = None

    @property
    def strands_the_last_day(self) -> bool:
        """Fewer orders after the run than a day of the store's had: a mistyped date (2025 for 2024)
        that alone sets the as-of date every feature and score is computed at."""
        return self.last_day is not None and self.orders_after < max(self.orders_per_day_around, 1.0)

    def describe(self) -> str:
        text = (f"no orders from {self.start} to {self.end} ({self.days} days) where the store had "
                f"{self.orders_per_day_around:,.1f} a day around it")
        if self.strands_the_last_day:
            text += (f", then {self.orders_after} order{'s' if self.orders_after != 1 else ''} up to {self.last_day}, "
                     "the last order day, which sets the as-of date of every score (a mistyped date?)")
        return text

    def as_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "days": self.days,
                "orders_per_day_around": round(self.orders_per_day_around, 3), "orders_after": self.orders_after,
                "description": self.describe()}


def closed_season_note(gaps: list[OrderGap]) -> str:
    """What a stretch as long as a closed season means for the forecasts, when there is one ("" else).

    One stretch cannot tell a missing part of the export from a shop closed for its season, and the
    models read it as missing records: they count its days of the coming year as days to buy on.
    The winter store of benchmarks/awkward_stores.py (open October to January), as of the end of a
    season, is forecast at +125 % of its year (its BTYD's mean +175 %; benchmarks/MEASUREMENTS.md, session 52)."""
    long = [gap for gap in gaps if gap.days >= SEASON_LIKE_DAYS]
    if not long:
        return ""
    return (f"a stretch of {long[0].days} days may also be a season the store closes for: if it closes then every "
            "year, the forecasts count those days of the coming year as days to buy on and are too high")


def first_and_more(gaps: list[OrderGap]) -> str:
    """The first stretch described and how many more there are: the words of a serving reason."""
    more = f" and {len(gaps) - 1} more such stretches" if len(gaps) > 1 else ""
    return gaps[0].describe() + more


def gaps_after(conn: duckdb.DuckDBPyConnection, first_day: date, until: date) -> list[OrderGap]:
    """The stretches (seen at ``until``, point in time) that reach into (first_day, until]: those a
    model's label windows over that span would read as customers who bought nothing (and are
    therefore not served over them)."""
    return [gap for gap in unobserved_gaps(conn, until=until) if gap.end > first_day]


@dataclass(frozen=True)
class Stretches:
    """A store's implausible empty runs, split into those read as unobserved days and its rhythm;
    ``tail``: the silence from the last order day to the cutoff when it is one (``silent_tail``),
    also among the unobserved."""

    unobserved: list[OrderGap]
    rhythm: list[OrderGap]
    tail: OrderGap | None = None
    closed: list[OrderGap] = field(default_factory=list)
    """The closed seasons read as unobserved days (``season_calendar``): the rhythm's runs, and the
    days of the projected closure from the last order day to the cutoff."""
    season_calendar: RhythmCalendar | None = None
    """The cycle of a rhythm of closed seasons, projected from the cutoff (open days count one day)."""
    under_way: OrderGap | None = None
    """The silence up to the cutoff when it began a year after a season-long closure began
    (``_season_under_way``): the store closed for its season again; then that closure is the
    rhythm's one run and this silence, not the ``tail``, the closure under way."""

    @property
    def time_gaps(self) -> list[OrderGap]:
        """The days no customer can be seen not to buy, as observed time leaves them out: the
        unobserved stretches and the closed seasons, in date order."""
        return sorted([*self.unobserved, *self.closed], key=lambda gap: gap.start)

    def closed_ranges(self) -> list[tuple[date, date]]:
        """(first, last) day of every closed season, seen and projected (``RhythmCalendar.closed_ranges``,
        ``RHYTHM_LOOKAHEAD_DAYS`` ahead of the cutoff): the days a forecast counts none of."""
        if self.season_calendar is None:
            return []
        calendar = self.season_calendar
        ahead = calendar.closed_ranges(calendar.cutoff + timedelta(days=1),
                                       calendar.cutoff + timedelta(days=RHYTHM_LOOKAHEAD_DAYS))
        return [(gap.start, gap.end) for gap in self.closed] + ahead

    def describe_rhythm(self) -> str:
        """One sentence on the recurring runs (empty when there are none)."""
        if not self.rhythm:
            return ""
        if self.under_way is not None:
            last, now = self.rhythm[-1], self.under_way
            return (f"no orders from {last.start} to {last.end} ({last.days} days), and none since {now.start} "
                    f"({now.days} days to {now.end}), a year after that closure began: a season the store closes for, "
                    "not missing records; its days are no customer's time, and the forecasts count only the open "
                    "days of the cycle ahead (the closure's days of the year, as last year's)")
        lengths = [gap.days for gap in self.rhythm]
        spacing = np.array(self.rhythm_spacings() or [0])
        every = ("" if spacing.max() == 0 else
                 f", one every {int(spacing.min())}-{int(spacing.max())} days" if spacing.min() != spacing.max()
                 else f", one every {int(spacing.min())} days")
        runs = (f"{len(self.rhythm)} runs of {min(lengths)}-{max(lengths)} days without orders recur from "
                f"{self.rhythm[0].start} to {self.rhythm[-1].end}{every}")
        if self.season_calendar is not None:
            return (f"{runs}: a season the store closes for, not missing records; its days are no customer's "
                    "time, and the forecasts count only the open days of the cycle ahead")
        return (f"{runs}: the store's own rhythm (orders on a few days of each cycle: invoicing dates, drops), "
                "read as its calendar, not as missing records")

    def rhythm_spacings(self) -> list[int]:
        """Start-to-start days of neighbouring rhythm runs, in order: not across a named run between
        two (a month missing from a monthly rhythm is no cycle)."""
        return [b.start.toordinal() - a.start.toordinal() for a, b in zip(self.rhythm, self.rhythm[1:])
                if not any(a.start < gap.start < b.start for gap in self.unobserved)]

    def calendar_ahead(self, cutoff) -> RhythmCalendar | None:
        """The store's order days after ``cutoff`` projected from a regular rhythm (``RhythmCalendar``):
        its last three runs agree in spacing and length as ``in_rhythm``'s consecutive rule reads them
        (or its last two are a closed season seen twice, ``_season_pair``, or its one closed season has
        its next closure ``under_way``; a closed season about a year apart is projected by the calendar's
        year, ``_season_calendar``), no named run follows the
        first of them, and the last one ended less than a cycle before the cutoff. None otherwise:
        irregular drops (the share rule) cannot be placed ahead, and a rhythm the store has left is no
        calendar."""
        runs = self.rhythm
        cutoff = pd.Timestamp(cutoff).date()
        if self.under_way is not None:  # a closed season seen once, the next closure under way
            return _season_calendar(cutoff, runs[-1:], YEAR_DAYS - runs[-1].days)
        pair = len(runs) >= 2 and _season_pair(runs[-2], runs[-1])  # a closed season seen twice
        first = -2 if pair else -3
        if len(runs) < -first or any(gap.start > runs[first].start for gap in self.unobserved):
            return None
        spacings = self.rhythm_spacings()[-RHYTHM_CYCLES:]
        lengths = np.array([gap.days for gap in runs[-RHYTHM_CYCLES:]], dtype=float)
        if not pair and (len(spacings) < 2 or not (_agree(np.diff([gap.start.toordinal() for gap in runs[-3:]])
                                                          .astype(float)) and _agree(lengths[-3:]))):
            return None
        period = int(round(float(np.median(spacings))))
        # the order days between neighbouring runs (period - a median run is a day short when the months'
        # lengths vary: the 5th and 6th of each month are 2 days, 30 - 29 = 1)
        opened = [b.start.toordinal() - a.end.toordinal() - 1 for a, b in zip(runs, runs[1:])][-RHYTHM_CYCLES:]
        opened_days = int(round(float(np.median(opened))))
        if (cutoff - runs[-1].end).days > period:
            return None
        if _season_spacing(period) and period - opened_days >= SEASON_LIKE_DAYS:  # a closed season: by the year
            return _season_calendar(cutoff, runs, opened_days)
        closed = period - min(max(opened_days, 1), period - 1)
        # the calendar's months: every recent cycle's order days begin on one day of the month (the 1st
        # of an invoicing wholesaler), which a cycle of 28-31 days keeps only on the calendar
        month_days = {date.fromordinal(gap.end.toordinal() + 1).day for gap in runs[-RHYTHM_CYCLES:]}
        monthly = MONTH_CYCLE_DAYS[0] <= period <= MONTH_CYCLE_DAYS[1] and len(month_days) == 1 \
            and next(iter(month_days)) <= 28
        yearly = YEAR_CYCLE_DAYS[0] <= period <= YEAR_CYCLE_DAYS[1]
        return RhythmCalendar(cutoff, period, closed, runs[-1].end, next(iter(month_days)) if monthly else None,
                              open_time=closed >= SEASON_LIKE_DAYS,
                              year_span=_year_span(runs[-1:]) if yearly else None)


RHYTHM_CYCLES = 6
"""Recent rhythm runs whose median spacing and length project the store's calendar ahead."""
YEAR_DAYS = 365
SEASON_CYCLE_DAYS = (335, 395)
"""Start-to-start days of the closures of a closed season (``SEASON_LIKE_DAYS``) that is read as
yearly: a season's dates move with the weather (a ski shop closes with the snow) and with holidays
tied to weekdays (a beach shop open from Memorial Day to Labor Day: its closures start 357 to 371
days apart), so within a month of a year, where shorter yearly runs keep ``YEAR_CYCLE_DAYS``."""
MONTH_CYCLE_DAYS = (27, 32)
"""A rhythm's cycle (median start-to-start days) that is read as the calendar's month when its order
days all begin on one day of the month."""
AVERAGE_MONTH_DAYS = 365.2425 / 12
YEAR_CYCLE_DAYS = (360, 370)
"""A rhythm's cycle read as the calendar's year: its closures start on the last one's day of the year
(a fixed 365-day cycle moves a day off every leap year)."""
RHYTHM_LOOKAHEAD_DAYS = 1100
"""Days after the cutoff the projected calendar covers (beyond them a day counts as a calendar day)."""


@dataclass(frozen=True)
class RhythmCalendar:
    """The days after ``cutoff`` on which a store in a regular rhythm takes orders.

    A wholesaler that dates every invoice on the first of the month has no order on the 2nd to the
    31st, in any month to come: P(an order within 7 days) as of the 1st is nil, and the order a
    customer places "next" is dated on the next invoice day. Every next-purchase model reads time as
    calendar days, and its curve spreads the cycle's chance over all of them, so it is read here on
    the store's own clock: the runs without orders continue every ``period`` days (``closed`` days
    each, the first after the one that ended at ``last_run_end``), and each open day counts
    ``period / (period - closed)`` days, so that a whole cycle counts its calendar length and the
    model's long-run rate is kept (``effective_days``; ``npd.predict_on_calendar``). A rhythm of the
    calendar's months (``month_day``: each cycle's order days start on that day of the month) is
    projected by months: a fixed 30-day cycle put the first of the month eleven days early within a
    year, and the dated next purchases of a year's window with it.
    """

    cutoff: date
    period: int
    closed: int
    last_run_end: date
    month_day: int | None = None
    open_time: bool = False
    """A season the store closes for (``SEASON_LIKE_DAYS`` or more of each cycle): the models read its
    history without the closures (``Stretches.closed``), so an open day counts one day, not the
    cycle's share."""
    year_span: tuple[tuple[int, int], tuple[int, int]] | None = None
    """(month, day) of the first and the last day of the closures of a yearly cycle (``YEAR_CYCLE_DAYS``):
    the last closure's, in every year; a closed season's, the median of its recent closures'
    (``_year_span``)."""
    early_closure: tuple[date, date] | None = None
    """Days after the cutoff up to the usual first closed day of a yearly season that closed early
    this year (``_with_closed_seasons``): closed too."""

    @property
    def open_days(self) -> int:
        return self.period - self.closed

    def _open_weight(self) -> float:
        return 1.0 if self.open_time else self.period / self.open_days

    def closed_ranges(self, first: date, last: date) -> list[tuple[date, date]]:
        """The cycle's closed days in [first, last] (days after the last run's end), as (first, last)
        runs; a calendar of the months has none this long and gives none."""
        if self.month_day is not None or last < first:
            return []
        days = np.arange(first.toordinal(), last.toordinal() + 1)
        closed = ~self._is_open(days)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], closed.astype(np.int8), [0]])))
        return [(date.fromordinal(int(days[a])), date.fromordinal(int(days[b - 1])))
                for a, b in zip(edges[::2], edges[1::2])]

    def weights(self) -> np.ndarray:
        """What each day cutoff + 1, cutoff + 2, ... counts: 0 on a projected day without orders."""
        if self.month_day is not None:
            days = np.datetime64(self.cutoff, "D") + 1 + np.arange(RHYTHM_LOOKAHEAD_DAYS)
            month = days.astype("datetime64[M]")
            # this month's first order day, or the last month's while it has not come (the 1st to the 4th
            # of a month whose order days start on the 5th belong to last month's window)
            anchor = month.astype("datetime64[D]") + (self.month_day - 1)
            anchor = np.where(days < anchor, (month - 1).astype("datetime64[D]") + (self.month_day - 1), anchor)
            is_open = (days - anchor).astype(int) < self.open_days
            return np.where(is_open, AVERAGE_MONTH_DAYS / self.open_days, 0.0)
        days = self.cutoff.toordinal() + 1 + np.arange(RHYTHM_LOOKAHEAD_DAYS)
        return np.where(self._is_open(days), self._open_weight(), 0.0)

    def _is_open(self, days: np.ndarray) -> np.ndarray:
        """Whether each day (proleptic ordinals, after the last run's end) is open in the projected cycle."""
        if self.year_span is None:
            return np.mod(days - (self.last_run_end.toordinal() + 1), self.period) < self.open_days
        (first_month, first_day), (last_month, last_day) = self.year_span
        wraps = (last_month, last_day) < (first_month, first_day)  # closed over the new year
        closed = np.zeros(days.shape, dtype=bool)
        for year in range(date.fromordinal(int(days.min())).year - 1, date.fromordinal(int(days.max())).year + 1):
            start = _day_of_year(year, first_month, first_day)
            end = _day_of_year(year + 1 if wraps else year, last_month, last_day)
            closed |= (days >= start) & (days <= end)
        if self.early_closure is not None:
            closed |= (days >= self.early_closure[0].toordinal()) & (days <= self.early_closure[1].toordinal())
        return ~closed

    def effective_days(self, days) -> np.ndarray:
        """The store-clock length of (cutoff, cutoff + days] for each ``days`` (fractions of a day
        count that share of it; beyond the lookahead, one per day)."""
        days = np.asarray(days, dtype=float)
        weights = self.weights()
        ends = np.concatenate([[0.0], np.cumsum(weights)])
        whole = np.clip(np.floor(np.nan_to_num(days, nan=0.0)), 0, RHYTHM_LOOKAHEAD_DAYS).astype(int)
        partial = np.where(whole < RHYTHM_LOOKAHEAD_DAYS, np.clip(days - whole, 0.0, 1.0), 0.0)
        out = ends[whole] + partial * weights[np.minimum(whole, RHYTHM_LOOKAHEAD_DAYS - 1)]
        out = out + np.clip(days - RHYTHM_LOOKAHEAD_DAYS, 0.0, None)
        return np.where(np.isnan(days), np.nan, np.where(days <= 0, 0.0, out))

    def calendar_days(self, effective) -> np.ndarray:
        """The inverse of ``effective_days``: the calendar days after the cutoff at which the store's
        clock reaches ``effective`` (on an open day; infinite stays infinite)."""
        effective = np.asarray(effective, dtype=float)
        weights = self.weights()
        ends = np.cumsum(weights)
        known = np.isfinite(effective)
        target = np.where(known, effective, 0.0)
        day = np.searchsorted(ends, target, side="left")  # the first day whose end reaches the target
        inside = day < RHYTHM_LOOKAHEAD_DAYS
        index = np.minimum(day, RHYTHM_LOOKAHEAD_DAYS - 1)
        before = np.where(index > 0, ends[np.maximum(index - 1, 0)], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            within = np.where(weights[index] > 0, (target - before) / weights[index], 1.0)
        days = np.where(inside, index + np.clip(within, 0.0, 1.0), RHYTHM_LOOKAHEAD_DAYS + (target - ends[-1]))
        return np.where(known, np.where(target <= 0, 0.0, days), effective)

    def describe(self) -> str:
        if self.open_time and self.year_span is not None:
            first, last = (date(2000, month, day) for month, day in self.year_span)  # a leap year holds 29 February
            return (f"closed for its season from {first.day} {first:%B} to {last.day} {last:%B} every year (its recent "
                    "closures' usual days): next-purchase chances and dates are read on the open days")
        if self.open_time:
            return (f"open {self.open_days} days of every {self.period} (closed for its season since "
                    f"{self.last_run_end + timedelta(days=self.open_days + 1)} in the cycle of the last closure, "
                    f"which ended {self.last_run_end}): next-purchase chances and dates are read on the open days")
        days = f"{self.open_days} day{'s' if self.open_days != 1 else ''}"
        cycle = (f"from day {self.month_day} of every month" if self.month_day is not None else
                 f"of every {self.period} (the last run without orders ended {self.last_run_end})")
        return f"orders on {days} {cycle}: next-purchase chances and dates are read on those days"


def _season_spacing(days: int) -> bool:
    return SEASON_CYCLE_DAYS[0] <= days <= SEASON_CYCLE_DAYS[1]


def _season_calendar(cutoff: date, runs: list[OrderGap], opened_days: int) -> RhythmCalendar:
    """The calendar of a closed season: a cycle of the calendar's year (``YEAR_DAYS``), closed on the
    days of the year its recent closures held (``_year_span``); ``opened_days``, the median days
    open between them, for the cycle's description."""
    closed = YEAR_DAYS - min(max(opened_days, 1), YEAR_DAYS - SEASON_LIKE_DAYS)
    return RhythmCalendar(cutoff, YEAR_DAYS, closed, runs[-1].end, open_time=True,
                          year_span=_year_span([gap for gap in runs[-RHYTHM_CYCLES:] if gap.days >= SEASON_LIKE_DAYS]))


def _year_span(runs: list[OrderGap]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(month, day) of the first and last closed day of the coming closures: the median of the recent
    closures' (``runs``), each moved into the last one's year, so that a season whose dates move
    (with the weather) is projected from its usual dates, not from its last year's alone."""
    last = runs[-1]

    def median_day(pick) -> date:
        offsets = []
        for gap in runs:
            day, years = pick(gap), pick(last).year - pick(gap).year
            moved = date.fromordinal(_day_of_year(day.year + years, day.month, day.day))
            offsets.append(moved.toordinal() - pick(last).toordinal())
        return date.fromordinal(pick(last).toordinal() + int(round(float(np.median(offsets)))))

    first, final = median_day(lambda gap: gap.start), median_day(lambda gap: gap.end)
    return (first.month, first.day), (final.month, final.day)


def _day_of_year(year: int, month: int, day: int) -> int:
    """The ordinal of (month, day) in ``year``; 29 February is the 28th in a year without it."""
    return date(year, month, 28 if (month, day) == (2, 29) else day).toordinal()


def order_gaps(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> list[OrderGap]:
    """The implausible empty runs of `staging.orders` (all orders, by `order_date`), up to ``until``,
    that the models read as unobserved days (not the store's rhythm), and its closed seasons
    (``Stretches.time_gaps``)."""
    return order_stretches(conn, until).time_gaps


def unobserved_gaps(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> list[OrderGap]:
    """``order_gaps`` without the closed seasons: the stretches that withhold a trained model
    (``gaps_after``: a closed season is the store's, not missing records) and that the revenue
    forecast's acquisition fit reads as unobserved days (it fits a closed season in calendar time:
    read as unobserved days, the closures made it extrapolate 1.9e11 new customers a month on the
    five-season store; the new customers it expects are then moved onto the open days,
    ``forecast.revenue.new_customer_forecast``)."""
    return order_stretches(conn, until).unobserved


def order_stretches(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> Stretches:
    """``order_gaps`` and the runs it leaves out as the store's rhythm (for the staging check); with
    ``until``, the silence up to it too (``silent_tail``)."""
    daily = conn.execute(_DAILY_SQL, {"until": until}).fetchall()
    return stretches_in_daily_counts([day for day, _ in daily], [n for _, n in daily], until)


def silent_tail(conn: duckdb.DuckDBPyConnection, until: date) -> OrderGap | None:
    """The days from the last order day to ``until`` (the as-of date) when the store's rate over the
    ``CONTEXT_DAYS`` before them leaves that many days empty with a probability below
    ``MAX_EMPTY_PROBABILITY`` (at least ``MIN_GAP_DAYS``), else None; not the current run of the
    store's rhythm (up to ``RHYTHM_MAX_LENGTH_RATIO`` times its median run). The runs between orders
    are seen only once an order ends them; this one no order has ended yet: a live store's feed that
    stopped, or a store closed for its season. Every model reads it as the runs between orders, as
    unobserved days (``order_gaps``): counted in each customer's time, a 30-day outage before the
    cutoff had the demo store's next six months served at -86 % (-49 % now; benchmarks/MEASUREMENTS.md,
    session 52)."""
    return order_stretches(conn, until).tail


def _silent_tail(silence: OrderGap | None, rhythm: list[OrderGap]) -> OrderGap | None:
    """``silent_tail`` of the silence up to the cutoff (``_silence``)."""
    if silence is not None and rhythm and \
            silence.days <= RHYTHM_MAX_LENGTH_RATIO * float(np.median([gap.days for gap in rhythm])):
        return None  # the rhythm's current run, as every run before it
    return silence


def _silence(days: list[date], counts: list[float], until, min_days: int) -> OrderGap | None:
    """The days from the last order day to ``until`` when at least ``min_days`` and the rate of the
    ``CONTEXT_DAYS`` before them leaves that many empty with a chance below ``MAX_EMPTY_PROBABILITY``."""
    if not days or until is None:
        return None
    until = pd.Timestamp(until).date()
    last = max(days)
    last = last.date() if isinstance(last, datetime) else last
    length = (until - last).days
    if length < min_days:
        return None
    recent = np.asarray(pd.to_datetime(pd.Series(days)), dtype="datetime64[D]") > np.datetime64(last, "D") - CONTEXT_DAYS
    rate = float(np.asarray(counts, dtype=float)[recent].sum()) / CONTEXT_DAYS
    if rate * length < -math.log(MAX_EMPTY_PROBABILITY):
        return None
    return OrderGap(last + timedelta(days=1), until, length, rate)


def stretches_in_daily_counts(days: list[date], counts: list[float], until=None) -> Stretches:
    """Every implausible empty run of a store's activity per day (``days`` with their counts; days
    missing between the first and the last are empty: orders in `staging.orders`, or the purchase
    days the season's tracking table counts, ``models.seasonality.tracking_table``), split by
    ``in_rhythm``; with ``until``, the silence from the last day to it when it is one
    (``silent_tail``), among the unobserved; and the closed seasons (``Stretches.time_gaps``, the
    days observed time leaves out)."""
    runs = _implausible_runs(days, counts)
    span = (pd.Timestamp(max(days)) - pd.Timestamp(min(days))).days + 1 if days else 0
    flags = in_rhythm(runs, span)
    rhythm = [gap for gap, r in zip(runs, flags) if r]
    # one test of the silence up to ``until`` (its length and the rate before it) at the shortest
    # length anything reads: a tail needs MIN_GAP_DAYS, a season's early closure fewer
    silence = _silence(days, counts, until, EARLY_CLOSURE_MIN_DAYS)
    tail = _silent_tail(silence if silence is not None and silence.days >= MIN_GAP_DAYS else None, rhythm)
    under_way = None
    if tail is not None and not rhythm and runs and _season_under_way(runs[-1], tail):
        flags[-1], rhythm, under_way, tail = True, [runs[-1]], tail, None
    stretches = Stretches([gap for gap, r in zip(runs, flags) if not r] + ([tail] if tail else []), rhythm, tail,
                          under_way=under_way)
    if not rhythm:
        return stretches
    early = max(EARLY_CLOSURE_MIN_DAYS, _longest_quiet_spell(days) + 1)
    return _with_closed_seasons(stretches, max(days), until,
                                silence if silence is not None and silence.days >= early else None)


def _longest_quiet_spell(days: list[date]) -> int:
    """The longest run of days without orders shorter than ``MIN_GAP_DAYS`` (a weekend-only market's
    five weekdays): a silence no longer than that is no closure begun early."""
    ordinals = np.unique(np.asarray(pd.to_datetime(pd.Series(days)), dtype="datetime64[D]").astype(np.int64))
    empty = np.diff(ordinals) - 1
    quiet = empty[empty < MIN_GAP_DAYS]
    return int(quiet.max()) if quiet.size else 0


def _with_closed_seasons(stretches: Stretches, last_day, until, silence: OrderGap | None = None) -> Stretches:
    """``stretches`` with its closed seasons when its rhythm is one of seasons (``calendar_ahead``
    at ``until``, else at the last order day, closed ``SEASON_LIKE_DAYS`` or more of each cycle):
    every such run, and the silence between the last order day and ``until`` when it reaches into a
    closure the cycle projects (the closure under way; or ``under_way``) unless it is the ``tail``;
    or when it is implausible at the store's rate (``silence``) and the projected closure begins
    within ``SEASON_EARLY_DAYS`` of its first day: the season ended early, and the days up to the
    projected closure are closed too (``RhythmCalendar.early_closure``)."""
    last_day = pd.Timestamp(last_day).date()
    cutoff = pd.Timestamp(until).date() if until is not None else last_day
    calendar = stretches.calendar_ahead(cutoff)
    if calendar is None or not calendar.open_time:
        return stretches
    closed = [gap for gap in stretches.rhythm if gap.days >= SEASON_LIKE_DAYS]
    if stretches.under_way is not None:  # from its own first day, which may be days off last year's
        closed.append(stretches.under_way)
    elif stretches.tail is None and calendar.closed_ranges(last_day + timedelta(days=1), cutoff):
        # the silence since the last order day reaches into the closure the cycle projects: all of it is
        # the closure under way (this year's season may have ended days before or after its usual date)
        closed.append(OrderGap(last_day + timedelta(days=1), cutoff, (cutoff - last_day).days, 0.0))
    elif stretches.tail is None and silence is not None and calendar.year_span is not None:
        coming = calendar.closed_ranges(cutoff + timedelta(days=1), silence.start + timedelta(days=SEASON_EARLY_DAYS))
        if coming:  # the season ended before its usual last day: closed from then to the usual closure
            closed.append(replace(silence, orders_per_day_around=0.0))
            if coming[0][0] > cutoff + timedelta(days=1):
                calendar = replace(calendar, early_closure=(cutoff + timedelta(days=1),
                                                            coming[0][0] - timedelta(days=1)))
    return replace(stretches, closed=closed, season_calendar=calendar)


SEASON_EARLY_DAYS = (SEASON_CYCLE_DAYS[1] - SEASON_CYCLE_DAYS[0]) // 2
"""Days before a closed season's usual first closed day within which an implausible silence is that
closure begun early (the ski store's seed 1 closed on 17 March 2023, its usual day 10 April)."""
EARLY_CLOSURE_MIN_DAYS = 3
"""The shortest silence read as a closed season's closure begun early, when the store's rate makes
it implausible and it is longer than any quiet spell of the store's history (``_longest_quiet_spell``):
near the season's usual end a busy shop's three silent days are its closure, where ``MIN_GAP_DAYS``
guards a history's weekends and holidays (from the ski store's default split, five days after it
closed, 19 % of its customers were expected to buy within 30 days; none did)."""


def in_rhythm(gaps: list[OrderGap], span_days: int = 0) -> np.ndarray:
    """Whether each run (in date order) recurs: it is one of three consecutive runs whose two
    start-to-start spacings agree within ``RHYTHM_TOLERANCE``, as do their lengths; or there are
    three or more runs and they hold ``RHYTHM_EMPTY_SHARE`` of the ``span_days`` of the history
    (then every run up to ``RHYTHM_MAX_LENGTH_RATIO`` times the median's length); or two runs a season
    long a year apart (``_season_pair``). A missing month in a monthly-invoicing store is a run twice
    as long and stays named; two Christmas closures are not yet a rhythm."""
    flags = np.zeros(len(gaps), dtype=bool)
    starts = np.array([gap.start.toordinal() for gap in gaps], dtype=float)
    lengths = np.array([gap.days for gap in gaps], dtype=float)
    if len(gaps) >= 3 and span_days and lengths.sum() >= RHYTHM_EMPTY_SHARE * span_days:
        return lengths <= RHYTHM_MAX_LENGTH_RATIO * float(np.median(lengths))
    for i in range(1, len(gaps) - 1):
        if _agree(np.diff(starts[i - 1:i + 2])) and _agree(lengths[i - 1:i + 2]):
            flags[i - 1:i + 2] = True
    for i in range(len(gaps) - 1):
        if _season_pair(gaps[i], gaps[i + 1]):
            flags[i:i + 2] = True
    return flags


def _season_pair(first: OrderGap, second: OrderGap) -> bool:
    """Two runs a season long (``SEASON_LIKE_DAYS``), about a year apart (``SEASON_CYCLE_DAYS``, start to
    start) and as long as each other (``RHYTHM_TOLERANCE``): a shop closed for the same months two
    years running, which a missing part of an export hardly repeats to the month. Shorter yearly runs (a
    Christmas fortnight) need three, as any rhythm does: a wholesaler closed at Christmas twice
    was made a rhythm, and the hybrid it unblocked was behind (benchmarks/MEASUREMENTS.md, session 51)."""
    spacing = second.start.toordinal() - first.start.toordinal()
    return (min(first.days, second.days) >= SEASON_LIKE_DAYS and _season_spacing(spacing)
            and _agree(np.array([first.days, second.days], dtype=float)))


def _season_under_way(closure: OrderGap, silence: OrderGap) -> bool:
    """The silence up to the cutoff began about a year (``SEASON_CYCLE_DAYS``) after a season-long run began,
    and is not yet longer than that run by more than ``RHYTHM_TOLERANCE``: the store closed for the
    same months again, which a feed that stopped or an export cut short hardly does to the month. Read
    as unobserved days, the closure under way was counted as days to buy on in every forecast ahead:
    the winter store (benchmarks/awkward_stores.py, open October to January) was served at +94 % of
    its next nine months from inside its second closure (benchmarks/MEASUREMENTS.md, session 54)."""
    spacing = silence.start.toordinal() - closure.start.toordinal()
    return (closure.days >= SEASON_LIKE_DAYS and _season_spacing(spacing)
            and (silence.days <= closure.days or _agree(np.array([closure.days, silence.days], dtype=float))))


def _agree(values: np.ndarray) -> bool:
    """Whether the values differ by at most ``RHYTHM_TOLERANCE`` of the largest."""
    return float(values.max() - values.min()) <= RHYTHM_TOLERANCE * float(values.max())


def _implausible_runs(days: list[date], counts: list[float]) -> list[OrderGap]:
    """Every run of at least ``MIN_GAP_DAYS`` empty days that the rate around it cannot explain."""
    if not days:
        return []
    first = pd.Timestamp(min(days)).normalize()
    index = (pd.to_datetime(pd.Series(days)).dt.normalize() - first).dt.days.to_numpy()
    filled = np.zeros(int(index.max()) + 1)
    np.add.at(filled, index, np.asarray(counts, dtype=float))
    empty = np.concatenate([[False], filled == 0, [False]])
    starts = np.flatnonzero(~empty[:-1] & empty[1:])  # first empty day of each run
    ends = np.flatnonzero(empty[:-1] & ~empty[1:])  # one past its last
    threshold = -math.log(MAX_EMPTY_PROBABILITY)
    last_day = (first + pd.Timedelta(days=len(filled) - 1)).date()
    gaps = []
    for start, stop in zip(starts, ends):
        length = int(stop - start)
        if length < MIN_GAP_DAYS:
            continue
        before = filled[max(start - CONTEXT_DAYS, 0):start]
        after = filled[stop:stop + CONTEXT_DAYS]
        rate = float(before.sum() + after.sum()) / (len(before) + len(after))
        if rate * length >= threshold:
            gaps.append(OrderGap((first + pd.Timedelta(days=int(start))).date(),
                                 (first + pd.Timedelta(days=int(stop) - 1)).date(), length, rate,
                                 int(filled[stop:].sum()), last_day))
    return gaps


# Observed time. A day inside such a stretch is a day the store has no record of: nobody can be
# seen there not to buy. The BTYD's recency (first to last purchase) and age (first purchase to the
# cutoff) count the days a customer was observed, so the stretch's days are taken out of both
# (holiday store without February-March 2011: the BTYD's holdout total -27 % in calendar time,
# -12 % in observed time, -15 % with the whole file; benchmarks/MEASUREMENTS.md, session 50).

def stretch_days(gaps: list[OrderGap], start, end) -> np.ndarray:
    """Days of ``gaps`` inside (start, end] for each pair of dates (array-likes of dates, or datetime64
    arrays of any shapes that broadcast): what observed time takes out of the span from a first
    purchase to a last purchase or a cutoff."""
    first, last = np.broadcast_arrays(_as_days(start), _as_days(end))
    total = np.zeros(first.shape, dtype=np.int64)
    for gap in gaps:
        inside = (np.minimum(last, np.datetime64(gap.end, "D")) - np.maximum(first + 1, np.datetime64(gap.start, "D"))
                  ).astype(np.int64) + 1
        total += np.clip(inside, 0, None)
    return total


def in_spans(spans, days) -> np.ndarray:
    """Whether each of ``days`` (dates, a DatetimeIndex or datetime64) lies in one of ``spans``, (first,
    last) days both included as ISO texts or dates (``Stretches.closed_ranges``): the closed days a
    forecast counts none of."""
    values = _as_days(days)
    inside = np.zeros(values.shape, dtype=bool)
    for first, last in spans:
        inside |= (values >= np.datetime64(first, "D")) & (values <= np.datetime64(last, "D"))
    return inside


def touches_stretches(gaps: list[OrderGap], first, last) -> np.ndarray:
    """Whether each span of days [first, last] (both included; as ``stretch_days`` takes them) shares
    a day with one of ``gaps``: the days an acquisition fit must not read, the months a season must
    leave out."""
    return stretch_days(gaps, _as_days(first) - np.timedelta64(1, "D"), last) > 0


def _as_days(values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":  # any shape, broadcast by the caller
        return values.astype("datetime64[D]")
    converted = pd.to_datetime(values)
    if isinstance(converted, pd.Timestamp):
        return np.datetime64(converted.date(), "D")
    return np.asarray(converted, dtype="datetime64[D]")


def stretch_days_sql(gaps: list[OrderGap], start: str, end: str) -> str:
    """``stretch_days`` as a DuckDB expression of two DATE expressions (the stretches as literals):
    ``0`` when there are none, so a store without a stretch runs the same SQL values as before."""
    if not gaps:
        return "0"
    terms = [f"greatest(least({end}, DATE '{gap.end.isoformat()}') - greatest({start} + 1, "
             f"DATE '{gap.start.isoformat()}') + 1, 0)" for gap in gaps]
    return "(" + " + ".join(terms) + ")"


def transaction_gaps(transactions: pd.DataFrame, until) -> list[OrderGap]:
    """The stretches of a transactions frame (``customer_id``, ``order_date``, one row per order
    or line) up to ``until``: the rule of ``order_gaps`` on its rows per day, for the BTYD summaries
    made from frames (``models.btyd.summarize``)."""
    return transaction_stretches(transactions, until).time_gaps


def transaction_stretches(transactions: pd.DataFrame, until) -> Stretches:
    """``stretches_in_daily_counts`` of a transactions frame's rows per day up to ``until``."""
    dates = pd.to_datetime(transactions["order_date"]).dt.normalize()
    counts = dates[dates <= pd.Timestamp(until).normalize()].value_counts().sort_index()
    return stretches_in_daily_counts(list(counts.index.date), list(counts.to_numpy(dtype=float)), until)
