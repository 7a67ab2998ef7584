"""Stretches of days without a single order where the store's own rate makes that implausible.

A transaction export that misses a month (a monthly file left out, a sheet not exported, a fetch
that skipped a range) looks to every model like a month in which all customers stopped buying: the
CLV model's label windows that overlap it learn a lower level, and the forecast follows. A store
that closes for a fortnight at Christmas looks the same. Only the merchant can tell the two apart,
so the platform names such stretches (a warning check on `staging.orders`, the backtest's `input`
block) instead of modelling them silently.

A run of at least ``MIN_GAP_DAYS`` consecutive days without an order is named when orders arriving
at the store's rate around it (the ``CONTEXT_DAYS`` before and after) would leave that many days
empty with a probability below ``MAX_EMPTY_PROBABILITY`` (Poisson: exp(-rate x days)). A store with
one order a week never gets a fortnight flagged; one with forty a day gets it after two weeks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import duckdb

MIN_GAP_DAYS = 14
"""Shorter empty runs are weekends, public holidays and quiet spells of small stores."""
CONTEXT_DAYS = 28
"""Days before and after a run whose orders give the rate it is judged at."""
MAX_EMPTY_PROBABILITY = 1e-6
"""A run is named when orders at the surrounding rate leave it empty less often than this."""

_RUNS_SQL = """
with daily as (
    select order_date as day, count(*)::bigint as orders
    from staging.orders
    where order_date is not null and ($until is null or order_date <= $until)
    group by order_date
),
span as (select min(day) as first_day, max(day) as last_day from daily),
calendar as (
    select cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as day
    from span where first_day is not null
),
filled as (
    select c.day, coalesce(d.orders, 0) as orders from calendar as c left join daily as d using (day)
),
empty as (
    -- consecutive empty days share day - (their rank): the island trick
    select day, day - cast(row_number() over (order by day) as integer) as island from filled where orders = 0
),
runs as (
    select min(day) as gap_start, max(day) as gap_end, count(*)::integer as days
    from empty group by island having count(*) >= $min_days
)
select r.gap_start, r.gap_end, r.days, sum(f.orders)::bigint as context_orders, count(f.day)::integer as context_days,
       (select sum(orders) from filled where day > r.gap_end)::bigint as orders_after,
       (select last_day from span) as last_day
from runs as r
left join filled as f
    on (f.day between r.gap_start - $context and r.gap_start - 1) or (f.day between r.gap_end + 1 and r.gap_end + $context)
group by all
order by r.gap_start
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


def gaps_after(conn: duckdb.DuckDBPyConnection, first_day: date, until: date) -> list[OrderGap]:
    """The stretches (seen at ``until``, point in time) that reach into (first_day, until]: those a
    model's label windows over that span would read as customers who bought nothing."""
    return [gap for gap in order_gaps(conn, until=until) if gap.end > first_day]


def order_gaps(conn: duckdb.DuckDBPyConnection, until: date | None = None) -> list[OrderGap]:
    """The implausible empty runs of `staging.orders` (all orders, by `order_date`), up to ``until``."""
    rows = conn.execute(_RUNS_SQL, {"until": until, "min_days": MIN_GAP_DAYS, "context": CONTEXT_DAYS}).fetchall()
    threshold = -math.log(MAX_EMPTY_PROBABILITY)
    gaps = []
    for start, end, days, context_orders, context_days, orders_after, last_day in rows:
        rate = (context_orders or 0) / context_days if context_days else 0.0
        if rate * days >= threshold:
            gaps.append(OrderGap(start, end, int(days), float(rate), int(orders_after or 0), last_day))
    return gaps
