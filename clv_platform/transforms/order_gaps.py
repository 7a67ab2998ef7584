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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

UNOBSERVED_NOTE = ("the models treat these days as unobserved (the BTYD leaves them out of each customer's time, "
                   "the season out of its months, and no model trained on windows that hold them is served), but what was bought "
                   "on them is in no total")
"""What the staging check and the backtest say the platform does with a named stretch."""

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


def first_and_more(gaps: list[OrderGap]) -> str:
    """The first stretch described and how many more there are: the words of a serving reason."""
    more = f" and {len(gaps) - 1} more such stretches" if len(gaps) > 1 else ""
    return gaps[0].describe() + more


def gaps_after(conn: duckdb.DuckDBPyConnection, first_day: date, until: date) -> list[OrderGap]:
    """The stretches (seen at ``until``, point in time) that reach into (first_day, until]: those a
    model's label windows over that span would read as customers who bought nothing (and are
    therefore not served over them)."""
    return [gap for gap in order_gaps(conn, until=until) if gap.end > first_day]


@dataclass(frozen=True)
class Stretches:
    """A store's implausible empty runs, split into those read as unobserved days and its rhythm."""

    unobserved: list[OrderGap]
    rhythm: list[OrderGap]

    def describe_rhythm(self) -> str:
        """One sentence on the recurring runs (empty when there are none)."""
        if not self.rhythm:
            return ""
        lengths = [gap.days for gap in self.rhythm]
        # spacings of neighbouring rhythm runs only: a named run between two (a missing month) is no cycle
        spacing = np.array([b.start.toordinal() - a.start.toordinal() for a, b in zip(self.rhythm, self.rhythm[1:])
                            if not any(a.start < gap.start < b.start for gap in self.unobserved)] or [0])
        every = ("" if spacing.max() == 0 else
                 f", one every {int(spacing.min())}-{int(spacing.max())} days" if spacing.min() != spacing.max()
                 else f", one every {int(spacing.min())} days")
        return (f"{len(self.rhythm)} runs of {min(lengths)}-{max(lengths)} days without orders recur from "
                f"{self.rhythm[0].start} to {self.rhythm[-1].end}{every}: the store's own rhythm (orders on a few "
                "days of each cycle: invoicing dates, drops), read as its calendar, not as missing records")


def order_gaps(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> list[OrderGap]:
    """The implausible empty runs of `staging.orders` (all orders, by `order_date`), up to ``until``,
    that the models read as unobserved days (not the store's rhythm)."""
    return order_stretches(conn, until).unobserved


def order_stretches(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> Stretches:
    """``order_gaps`` and the runs it leaves out as the store's rhythm (for the staging check)."""
    daily = conn.execute(_DAILY_SQL, {"until": until}).fetchall()
    return stretches_in_daily_counts([day for day, _ in daily], [n for _, n in daily])


def gaps_in_daily_counts(days: list[date], counts: list[float]) -> list[OrderGap]:
    """The implausible empty runs of a store's activity per day (``days`` with their counts; days
    missing between the first and the last are empty): orders in `staging.orders`, or the purchase
    days the season's tracking table counts (``models.seasonality.tracking_table``). Runs in the
    store's rhythm (``in_rhythm``) are not among them."""
    return stretches_in_daily_counts(days, counts).unobserved


def stretches_in_daily_counts(days: list[date], counts: list[float]) -> Stretches:
    """Every implausible empty run of the daily counts, split by ``in_rhythm``."""
    runs = _implausible_runs(days, counts)
    span = (pd.Timestamp(max(days)) - pd.Timestamp(min(days))).days + 1 if days else 0
    rhythm = in_rhythm(runs, span)
    return Stretches([gap for gap, r in zip(runs, rhythm) if not r], [gap for gap, r in zip(runs, rhythm) if r])


def in_rhythm(gaps: list[OrderGap], span_days: int = 0) -> np.ndarray:
    """Whether each run (in date order) recurs: it is one of three consecutive runs whose two
    start-to-start spacings agree within ``RHYTHM_TOLERANCE``, as do their lengths; or there are
    three or more runs and they hold ``RHYTHM_EMPTY_SHARE`` of the ``span_days`` of the history
    (then every run up to ``RHYTHM_MAX_LENGTH_RATIO`` times the median's length). A missing month in
    a monthly-invoicing store is a run twice as long and stays named; two closures a year apart are
    not yet a rhythm."""
    flags = np.zeros(len(gaps), dtype=bool)
    starts = np.array([gap.start.toordinal() for gap in gaps], dtype=float)
    lengths = np.array([gap.days for gap in gaps], dtype=float)
    if len(gaps) >= 3 and span_days and lengths.sum() >= RHYTHM_EMPTY_SHARE * span_days:
        return lengths <= RHYTHM_MAX_LENGTH_RATIO * float(np.median(lengths))

    def agree(values: np.ndarray) -> bool:
        return float(values.max() - values.min()) <= RHYTHM_TOLERANCE * float(values.max())

    for i in range(1, len(gaps) - 1):
        if agree(np.diff(starts[i - 1:i + 2])) and agree(lengths[i - 1:i + 2]):
            flags[i - 1:i + 2] = True
    return flags


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
    dates = pd.to_datetime(transactions["order_date"]).dt.normalize()
    counts = dates[dates <= pd.Timestamp(until).normalize()].value_counts().sort_index()
    return gaps_in_daily_counts(list(counts.index.date), list(counts.to_numpy(dtype=float)))
