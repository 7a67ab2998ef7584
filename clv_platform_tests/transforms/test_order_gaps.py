"""`transforms.order_gaps`: which empty stretches of a store's orders are named, and which are not."""

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import btyd
from clv_platform.transforms.order_gaps import (
    OrderGap, in_rhythm, order_gaps, order_stretches, stretch_days, stretch_days_sql, transaction_gaps,
)

START = date(2024, 1, 1)


def store(per_day: dict[int, int]) -> duckdb.DuckDBPyConnection:
    """staging.orders with ``per_day[i]`` orders on day i after START."""
    conn = duckdb.connect()
    conn.execute("create schema staging")
    conn.execute("create table staging.orders (order_id varchar, order_date date)")
    rows = [(f"o{day}-{k}", START + timedelta(days=day)) for day, n in per_day.items() for k in range(n)]
    if rows:
        conn.executemany("insert into staging.orders values (?, ?)", rows)
    return conn


def test_a_missing_month_in_a_busy_store_is_named_with_its_dates_and_rate():
    # 5 orders a day for 150 days, nothing on days 40-69 (30 days)
    conn = store({day: 5 for day in range(150) if not 40 <= day < 70})
    assert order_gaps(conn) == [OrderGap(START + timedelta(days=40), START + timedelta(days=69), 30, 5.0,
                                         orders_after=400, last_day=START + timedelta(days=149))]
    assert order_gaps(conn)[0].describe() == ("no orders from 2024-02-10 to 2024-03-10 (30 days) where the store had "
                                              "5.0 a day around it")
    # point in time: a cutoff inside the gap sees no run yet closed by an order, but the silence up to
    # it (16 days at 5 a day): its days are unobserved as the run's will be once an order ends it
    tail = OrderGap(START + timedelta(days=40), START + timedelta(days=55), 16, 5.0)
    assert order_gaps(conn, until=START + timedelta(days=55)) == [tail]
    assert order_stretches(conn, until=START + timedelta(days=55)).tail == tail
    assert order_gaps(conn, until=START + timedelta(days=52)) == []  # 13 days: shorter than a named run
    assert len(order_gaps(conn, until=START + timedelta(days=100))) == 1


@pytest.mark.parametrize(
    "per_day",
    [
        {day: 5 for day in range(150) if not 40 <= day < 53},  # 13 empty days: shorter than a named run
        {day: 1 for day in range(0, 400, 7)},  # one order a week: six empty days every week
        {day: 1 for day in range(0, 300, 2) if not 100 <= day < 124},  # 0.5 a day: 24 days empty has p = 6e-6
        {day: 3 for day in range(90)},  # no gap at all
    ],
    ids=["thirteen_days", "weekly_store", "slow_store", "no_gap"],
)
def test_quiet_spells_that_the_rate_explains_are_not_named(per_day):
    assert order_gaps(store(per_day)) == []


def test_a_lone_order_long_after_the_rest_is_named_as_what_sets_the_as_of_date():
    """A mistyped year (2025 for 2024) on one order: the files store's as-of date is its last order
    day, so every customer would look a year lapsed; the gap before it says so."""
    per_day = {day: 4 for day in range(120)}
    per_day[480] = 1
    (gap,) = order_gaps(store(per_day))
    assert (gap.start, gap.end, gap.orders_after, gap.last_day) == (
        START + timedelta(days=120), START + timedelta(days=479), 1, START + timedelta(days=480))
    assert gap.strands_the_last_day
    assert gap.describe().endswith("then 1 order up to 2025-04-25, the last order day, which sets the as-of date of "
                                   "every score (a mistyped date?)")


def test_an_empty_table_has_no_gaps():
    assert order_gaps(store({})) == []


def test_stretch_days_count_the_stretch_inside_each_span_in_numpy_and_in_sql():
    """Observed time takes a stretch's days out of (start, end]: a span that starts inside the
    stretch loses only the days after its start, one that ends before it nothing, the start day
    itself is never taken out; DuckDB's expression gives the same days."""
    gaps = [OrderGap(date(2024, 2, 10), date(2024, 3, 10), 30, 5.0),
            OrderGap(date(2024, 5, 1), date(2024, 5, 14), 14, 9.0)]
    spans = [(date(2024, 1, 1), date(2024, 6, 30), 44), (date(2024, 2, 20), date(2024, 3, 5), 14),
             (date(2024, 1, 1), date(2024, 2, 9), 0), (date(2024, 3, 10), date(2024, 6, 1), 14),
             (date(2024, 2, 9), date(2024, 2, 10), 1), (date(2024, 3, 11), date(2024, 3, 11), 0)]
    starts, ends, expected = zip(*spans)
    assert stretch_days(gaps, list(starts), list(ends)).tolist() == list(expected)
    assert stretch_days(gaps, list(starts), date(2024, 6, 30)).tolist() == [44, 33, 44, 14, 44, 14]
    assert stretch_days([], list(starts), list(ends)).tolist() == [0] * len(spans)
    conn = duckdb.connect()
    sql = stretch_days_sql(gaps, "s", "e")
    got = [conn.execute(f"select {sql} from (select ?::date as s, ?::date as e)", [s, e]).fetchone()[0]
           for s, e, _ in spans]
    assert got == list(expected)
    assert stretch_days_sql([], "s", "e") == "0"


def test_a_transactions_frame_shows_the_same_stretch_as_its_orders():
    per_day = {day: 5 for day in range(150) if not 40 <= day < 70}
    frame = pd.DataFrame([(f"c{k}", START + timedelta(days=day), 10.0) for day, n in per_day.items() for k in range(n)],
                         columns=["customer_id", "order_date", "amount"])
    assert transaction_gaps(frame, START + timedelta(days=149)) == order_gaps(store(per_day))
    assert transaction_gaps(frame, START + timedelta(days=55)) == order_gaps(store(per_day), START + timedelta(days=55))
    assert [gap.days for gap in transaction_gaps(frame, START + timedelta(days=55))] == [16]


def invoicing_days(months: int, skip: int | None = None, per_day: int = 20) -> dict[int, int]:
    """Orders only on the first three days of each month from START (a wholesaler's invoicing dates,
    a brand's monthly drop), ``per_day`` on each; month ``skip`` has none."""
    days = {}
    for m in range(months):
        if m == skip:
            continue
        first = date(START.year + m // 12, m % 12 + 1, 1)
        for d in range(3):
            days[(first - START).days + d] = per_day
    return days


def test_runs_that_recur_every_month_are_the_stores_rhythm_not_missing_records():
    """Thirteen runs of 26-28 empty days between monthly invoicing days: each alone is implausible
    at 20 orders a day around it, together they are the store's calendar: none is unobserved."""
    conn = store(invoicing_days(14))
    stretches = order_stretches(conn)
    assert order_gaps(conn) == [] and stretches.unobserved == []
    assert [(g.start, g.end) for g in stretches.rhythm][:2] == [(date(2024, 1, 4), date(2024, 1, 31)),
                                                               (date(2024, 2, 4), date(2024, 2, 29))]
    assert len(stretches.rhythm) == 13 and {g.days for g in stretches.rhythm} == {26, 27, 28}
    assert stretches.describe_rhythm() == (
        "13 runs of 26-28 days without orders recur from 2024-01-04 to 2025-01-31, one every 29-31 days: the "
        "store's own rhythm (orders on a few days of each cycle: invoicing dates, drops), read as its calendar, "
        "not as missing records")


def test_a_month_missing_from_a_monthly_rhythm_is_still_named():
    """The skipped month leaves one run twice as long as the rhythm's: that one is a missing file."""
    conn = store(invoicing_days(14, skip=6))
    stretches = order_stretches(conn)
    assert [(g.start, g.end, g.days) for g in stretches.unobserved] == [(date(2024, 6, 4), date(2024, 7, 31), 58)]
    assert len(stretches.rhythm) == 11
    # the cycle is told from neighbouring rhythm runs, not across the missing month (May to August: 92 days)
    assert "one every 29-31 days" in stretches.describe_rhythm()


def irregular_drops() -> dict[int, int]:
    """Three-day drops every 20 to 45 days over 1,200 days (seeded), 30-79 orders a drop day."""
    rng = np.random.default_rng(3)
    per_day, day = {}, 0
    while day < 1200:
        per_day.update({day + k: int(rng.integers(30, 80)) for k in range(3)})
        day += int(rng.integers(20, 46))
    return per_day


def test_drops_at_irregular_spacings_are_a_rhythm_when_the_runs_hold_most_of_the_history():
    """Three-day drops every 20 to 45 days: the spacings and lengths seldom agree three in a row,
    but the runs hold most of the store's days, which missing files do not."""
    per_day = irregular_drops()
    stretches = order_stretches(store(per_day))
    assert stretches.unobserved == [] and len(stretches.rhythm) == 36
    assert sum(g.days for g in stretches.rhythm) > 0.5 * (max(per_day) + 1)
    # the same drops with the spacing rule alone: some runs would be named as missing records
    assert not in_rhythm(stretches.rhythm).all()


def test_two_season_long_closures_a_year_apart_are_a_closed_season():
    """A winter shop's two summers closed, the same months a year apart: a closed season (session 53;
    until then two runs stayed named, as a missing part of the export would be)."""
    per_day = {day: 8 for day in range(800) if (START + timedelta(days=day)).month in (10, 11, 12, 1)}
    stretches = order_stretches(store(per_day))
    assert stretches.unobserved == []
    assert [(g.start, g.end) for g in stretches.rhythm] == [(date(2024, 2, 1), date(2024, 9, 30)),
                                                           (date(2025, 2, 1), date(2025, 9, 30))]
    assert stretches.closed == stretches.rhythm and stretches.season_calendar.year_span == ((2, 1), (9, 30))
    # one such closure is a stretch; two of another length or not a year apart are two stretches
    one = order_stretches(store({day: n for day, n in per_day.items() if day < 500}))
    assert [(g.start, g.end) for g in one.unobserved] == [(date(2024, 2, 1), date(2024, 9, 30))] and not one.rhythm
    shifted = {day: 8 for day in range(800)
               if (START + timedelta(days=day)).month in ((10, 11, 12, 1) if day < 400 else (1,))}
    apart = order_stretches(store(shifted))
    assert apart.rhythm == [] and len(apart.unobserved) == 2


def test_one_closure_and_the_next_under_way_a_year_later_are_a_closed_season():
    """A winter shop as of a day in its second summer: its one closure seen and the silence since the
    same day a year later are its season (session 54; until then the silence was unobserved days and
    the coming summer counted as days to buy on: +94 % served). A silence begun at another time of
    the year, or already far longer than the closure, is a feed that stopped, as before."""
    per_day = {day: 8 for day in range(500) if (START + timedelta(days=day)).month in (10, 11, 12, 1)}
    conn = store(per_day)  # orders to 2025-01-31; closed 2024-02-01 to 2024-09-30
    stretches = order_stretches(conn, until=date(2025, 4, 22))
    assert stretches.unobserved == [] and stretches.tail is None
    assert [(g.start, g.end) for g in stretches.rhythm] == [(date(2024, 2, 1), date(2024, 9, 30))]
    assert (stretches.under_way.start, stretches.under_way.end, stretches.under_way.days) == \
        (date(2025, 2, 1), date(2025, 4, 22), 81)
    calendar = stretches.season_calendar
    assert (calendar.period, calendar.closed, calendar.year_span, calendar.open_time) == \
        (365, 243, ((2, 1), (9, 30)), True)
    assert stretches.closed_ranges()[:4] == [
        (date(2024, 2, 1), date(2024, 9, 30)), (date(2025, 2, 1), date(2025, 4, 22)),
        (date(2025, 4, 23), date(2025, 9, 30)), (date(2026, 2, 1), date(2026, 9, 30))]
    # what observed time leaves out of a customer who bought on 2025-01-15: the closure under way
    assert order_gaps(conn, until=date(2025, 4, 22)) == stretches.closed
    assert stretches.calendar_ahead(date(2025, 4, 22)) == calendar
    assert calendar.describe() == ("closed for its season from 1 February to 30 September every year (its recent "
                                   "closures' usual days): next-purchase chances and dates are read on the open days")
    # the orders stopped on 2024-11-30: the silence began 304 days after the closure, not the season
    before = {d: n for d, n in per_day.items() if START + timedelta(days=d) < date(2024, 12, 1)}
    stopped = order_stretches(store(before), until=date(2025, 4, 22))
    assert stopped.season_calendar is None and stopped.tail.start == date(2024, 12, 1)
    assert [(g.start, g.end) for g in stopped.unobserved] == [(date(2024, 2, 1), date(2024, 9, 30)),
                                                             (date(2024, 12, 1), date(2025, 4, 22))]
    # still silent long after last year's closure ended (more than a fifth longer): no season either
    late = order_stretches(conn, until=date(2025, 12, 31))
    assert late.season_calendar is None and late.tail.days == 334 and late.under_way is None


def test_a_season_whose_dates_move_with_the_snow_is_projected_on_its_usual_days():
    """A ski shop that closes with the snow: its two closures start 383 days apart and last 249 and
    216 days (until session 54 the pair had to start within 5 days of a year apart, so they were two
    stretches read as missing records). The coming closures fall on the median days of the year of
    the recent ones, and this year's early closure is under way from its own first day."""
    seasons = [(date(2024, 1, 1), date(2024, 3, 31)), (date(2024, 12, 6), date(2025, 4, 18)),
               (date(2025, 11, 21), date(2026, 3, 16))]
    per_day = {day: 8 for day in range(900)
               if any(a <= START + timedelta(days=day) <= b for a, b in seasons)}
    conn = store(per_day)
    stretches = order_stretches(conn, until=date(2026, 3, 16))
    assert stretches.unobserved == []
    assert [(g.start, g.end, g.days) for g in stretches.rhythm] == [(date(2024, 4, 1), date(2024, 12, 5), 249),
                                                                   (date(2025, 4, 19), date(2025, 11, 20), 216)]
    calendar = stretches.season_calendar
    # 2024-04-01 and 2025-04-19 put into one year: 18 days apart, the median 9 days before the last start
    assert (calendar.period, calendar.year_span) == (365, ((4, 10), (11, 28)))
    assert stretches.closed_ranges()[2:4] == [(date(2026, 4, 10), date(2026, 11, 28)),
                                              (date(2027, 4, 10), date(2027, 11, 28))]
    # as of 30 June the store has been closed since 17 March, before its usual 10 April: all of it is
    # the closure under way (read as observed days, its customers would lapse through it)
    later = order_stretches(conn, until=date(2026, 6, 30))
    assert later.closed_ranges()[2:4] == [(date(2026, 3, 17), date(2026, 6, 30)),
                                          (date(2026, 7, 1), date(2026, 11, 28))]
    assert later.unobserved == [] and later.tail is None
    # as of 31 March, a fortnight of silence 24 days before the usual closure: the season ended early,
    # and the days up to 10 April are closed too (counted as open, they were days to buy on)
    early = order_stretches(conn, until=date(2026, 3, 31))
    assert early.season_calendar.early_closure == (date(2026, 4, 1), date(2026, 4, 9))
    # and the next-purchase models read the same calendar: no chance to buy in the 30 days ahead
    from clv_platform.models.npd_backtest import order_calendar_at
    assert order_calendar_at(conn, date(2026, 3, 31)) == early.season_calendar
    assert early.season_calendar.effective_days([7, 30]).tolist() == [0.0, 0.0]
    assert early.closed_ranges()[2:4] == [(date(2026, 3, 17), date(2026, 3, 31)),
                                          (date(2026, 4, 1), date(2026, 11, 28))]
    # near the season's usual end three silent days of a busy shop are its closure already; two are not
    assert order_stretches(conn, until=date(2026, 3, 19)).season_calendar.early_closure == (date(2026, 3, 20),
                                                                                           date(2026, 4, 9))
    assert order_stretches(conn, until=date(2026, 3, 18)).season_calendar.early_closure is None
    # a market open on weekends only has five silent weekdays every week of its seasons: six are its closure
    weekends = store({day: 20 for day in per_day if (START + timedelta(days=day)).weekday() >= 5})
    assert order_stretches(weekends, until=date(2026, 3, 20)).season_calendar.early_closure is None
    calendar = order_stretches(weekends, until=date(2026, 3, 21)).season_calendar
    assert calendar.early_closure == (date(2026, 3, 22), date(2026, 4, 7)) and calendar.year_span == ((4, 8), (11, 29))


def test_two_christmas_closures_are_not_yet_a_rhythm():
    """A wholesaler closed over Christmas two years running: runs shorter than a season need three to
    be a rhythm (two unblocked a hybrid that was behind, session 51)."""
    per_day = {day: 8 for day in range(740)
               if not ((START + timedelta(days=day)).month == 12 and (START + timedelta(days=day)).day >= 15)}
    stretches = order_stretches(store(per_day))
    assert [(g.start, g.end) for g in stretches.unobserved] == [(date(2024, 12, 15), date(2024, 12, 31)),
                                                               (date(2025, 12, 15), date(2025, 12, 31))]
    assert stretches.rhythm == [] and stretches.closed == []


def test_the_btyd_keeps_calendar_time_in_a_stores_rhythm():
    """The drop store's empty days between drops are days nobody bought on, this year and next: its
    customers' recency and age stay in calendar weeks (observed time would count only drop days)."""
    rows = [(f"c{(day * 7 + k) % 40}", START + timedelta(days=day), 25.0)
            for day, n in invoicing_days(14).items() for k in range(n)]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    summary = btyd.summarize(frame, date(2025, 2, 3))
    assert (summary["T"] == summary["calendar_T"]).all() and (summary["recency"] == summary["calendar_recency"]).all()
    assert summary["T"].max() == (date(2025, 2, 3) - START).days / 7


def test_a_monthly_rhythm_projects_its_order_days_by_the_calendars_months():
    """Invoicing on the 1st to the 3rd of each month, seen up to 2025-02-03: the next order days are
    1-3 March, 1-3 April, ... (a fixed cycle of the median 31 days put them on 4 March, 4 April, ...
    and eleven days off within a year). Each counts a third of an average month, so the store's clock
    keeps the calendar's length over whole months."""
    conn = store(invoicing_days(14))
    calendar = order_stretches(conn, until=date(2025, 2, 3)).calendar_ahead(date(2025, 2, 3))
    assert (calendar.month_day, calendar.open_days, calendar.last_run_end) == (1, 3, date(2025, 1, 31))
    month = 365.2425 / 12
    # 4-28 February: no order day; 1 March is day 26 after the cutoff, 3 March day 28, 1 April day 57
    assert calendar.effective_days([7, 25, 26, 28, 56, 57]).tolist() == pytest.approx(
        [0.0, 0.0, month / 3, month, month, month + month / 3])
    # a year ahead: twelve months of the store's clock
    assert float(calendar.effective_days(365)) == pytest.approx(12 * month)
    # the way back lands on an order day: half of March 1's share is reached during March 1 (day 26)
    assert calendar.calendar_days([month / 6, month, month + 1]).tolist() == pytest.approx(
        [25.5, 28.0, 56 + 3 / month])
    assert calendar.describe() == ("orders on 3 days from day 1 of every month: next-purchase chances and dates are "
                                   "read on those days")


def test_a_cycle_of_whole_weeks_is_projected_by_its_period():
    """Drops every 21 days, three days each: the order days ahead are every 21 days from the last
    drop's first day."""
    per_day = {day + k: 30 for day in range(0, 630, 21) for k in range(3)}
    calendar = order_stretches(store(per_day)).calendar_ahead(START + timedelta(days=611))
    assert (calendar.month_day, calendar.period, calendar.open_days) == (None, 21, 3)
    assert calendar.last_run_end == START + timedelta(days=608)  # the last drop: days 609-611
    # days 612-629 closed, 630-632 open
    assert calendar.effective_days([18, 19, 21, 39, 40]).tolist() == pytest.approx([0.0, 7.0, 21.0, 21.0, 28.0])


def test_no_calendar_is_projected_from_irregular_drops_a_stopped_rhythm_or_past_a_missing_month():
    """The share rule's drops cannot be placed ahead; a rhythm whose last run ended more than a cycle
    before the cutoff is one the store has left; a named run among the last three breaks the cycle."""
    per_day = irregular_drops()
    drops = order_stretches(store(per_day))
    assert len(drops.rhythm) == 36 and drops.calendar_ahead(START + timedelta(days=max(per_day))) is None
    monthly = order_stretches(store(invoicing_days(14)), until=date(2025, 2, 3))
    assert monthly.calendar_ahead(date(2025, 2, 3)) is not None
    assert monthly.calendar_ahead(date(2025, 3, 4)) is None
    skipped = order_stretches(store(invoicing_days(14, skip=12)), until=date(2025, 2, 3))
    assert skipped.unobserved and skipped.calendar_ahead(date(2025, 2, 3)) is None
