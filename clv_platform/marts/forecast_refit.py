"""The revenue forecast's refit (seasonal index and rehearsal errors) from DuckDB, never every order in pandas.

``forecast.revenue.seasonal_index`` and ``rehearse`` group a whole order frame in pandas several
times; at 1M customers (4.2M orders) loading and grouping it was most of the 57-95 s refit of
marts/revenue_forecast. The same groupings run here in SQL over staging.orders (``sql/forecast_*.sql``)
and hand the shared numeric core of ``forecast.revenue`` only small frames: purchase-day counts per
calendar day (``seasonal_index_from_days``), the rehearsal's BTYD summary grouped by distinct
(frequency, recency, T, monetary) with customer counts (``existing_customer_forecast`` takes
groups), its fit sample (per customer, the deterministic ``fit_purchase_model`` sample), the first
orders and the actual revenue per rehearsal period (``rehearsal_errors``). The pandas functions stay
for the backtest's CSV data sets; a test holds both paths to the same results on a demo store.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from clv_platform.core.sql import read_sql, run_script
from clv_platform.forecast import revenue
from clv_platform.models import btyd, seasonality
from clv_platform.transforms.order_gaps import OrderGap, order_gaps, order_stretches, stretch_days_sql

SUMMARY_TABLE = "forecast_btyd_summary"
"""Temp table written by ``sql/forecast_btyd_summary.sql`` (dropped after use)."""


def first_orders(conn: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """``revenue.first_orders`` of staging.orders up to ``cutoff`` (one row per buyer)."""
    return conn.execute(read_sql("clv_platform.marts", "sql/forecast_first_orders.sql"), {"cutoff": cutoff}).df()


def period_actuals(conn: duckdb.DuckDBPyConnection, periods: list[revenue.Period], rc: date,
                   cutoff: date) -> pd.DataFrame:
    """``revenue.period_actuals`` of the orders up to ``cutoff``, buyers known at ``rc`` apart."""
    return conn.execute(read_sql("clv_platform.marts", "sql/forecast_period_actuals.sql"), {
        "cutoff": cutoff, "rehearsal_cutoff": rc, "labels": [p.label for p in periods],
        "starts": [p.start for p in periods], "ends": [p.end for p in periods],
    }).df()


def define_stretch_days(conn: duckdb.DuckDBPyConnection, gaps: list[OrderGap]) -> None:
    """The temp macro ``clv_stretch_days(a, b)`` the summary SQL reads: days of ``gaps`` (the stretches
    without orders seen at its cutoff) inside (a, b] (``order_gaps.stretch_days_sql``), so its recency
    and T are in observed time as every other BTYD summary's."""
    conn.execute(f"create or replace temp macro clv_stretch_days(a, b) as {stretch_days_sql(gaps, 'a', 'b')}")


def _summary_table(conn: duckdb.DuckDBPyConnection, cutoff: date, gaps: list[OrderGap]) -> None:
    define_stretch_days(conn, gaps)
    run_script(conn, read_sql("clv_platform.marts", "sql/forecast_btyd_summary.sql"), {"cutoff": cutoff})


def customer_summary(conn: duckdb.DuckDBPyConnection, cutoff: date, known_only: bool = False) -> pd.DataFrame:
    """``btyd.summarize`` of staging.orders at ``cutoff`` with the columns the BTYD fit reads (customer_id,
    frequency, recency, T, monetary), in customer id order (``summarize``'s); ``known_only`` leaves out
    the untied guest orders (the forecast's fallback summary when ml.btyd_scores is missing)."""
    _summary_table(conn, cutoff, order_gaps(conn, until=cutoff))
    try:
        return _summary_rows(conn, known_only)
    finally:
        conn.execute(f"drop table if exists {SUMMARY_TABLE}")


def _summary_rows(conn: duckdb.DuckDBPyConnection, known_only: bool = False) -> pd.DataFrame:
    where = "where customer_id not like 'guest:%'" if known_only else ""
    return conn.execute(f"select customer_id, frequency, recency, T, monetary from {SUMMARY_TABLE} {where} "
                        "order by customer_id").df()


def rehearse(conn: duckdb.DuckDBPyConnection, cutoff: date, days: pd.DataFrame, firsts: pd.DataFrame,
             model_name: str = btyd.BGNBD, months: int = revenue.REHEARSAL_MONTHS,
             max_fit_customers: int | None = None) -> revenue.Rehearsal:
    """``revenue.rehearse`` on staging.orders up to ``cutoff``.

    ``days`` (``purchase_days``) and ``firsts`` (``first_orders``) at ``cutoff`` serve the
    rehearsal cutoff too: both are cut there by the numeric core (a buyer's first day and its value
    do not depend on later orders).
    """
    rc = revenue.rehearsal_cutoff(cutoff, months)
    if days.empty or (pd.Timestamp(rc) - pd.Timestamp(days["day"].min())).days < revenue.MIN_REHEARSAL_HISTORY_DAYS:
        return revenue.Rehearsal.none()
    # the stretches seen at the rehearsal cutoff: its summary's (a closed season's too) and its acquisitions'
    stretches = order_stretches(conn, until=rc)
    _summary_table(conn, rc, stretches.time_gaps)
    gaps = stretches.unobserved
    try:
        # the fit reads customers (its deterministic sample is of customer ids); the forecast reads
        # the summary grouped with customer counts (``existing_customer_forecast``)
        model = revenue.rehearsal_model(_summary_rows(conn).set_index("customer_id"), model_name, max_fit_customers)
        if model is None:
            return revenue.Rehearsal.none()
        grouped = conn.execute(f"select frequency, recency, T, monetary, count(*) as customers from {SUMMARY_TABLE} "
                               "group by all order by all").df()
    finally:
        conn.execute(f"drop table if exists {SUMMARY_TABLE}")
    season = seasonality.seasonal_index_from_days(days, model, rc)
    past = revenue.forecast_revenue(None, rc, model=model, summary=grouped, months=months, with_rehearsal=False,
                                    season=season, firsts=firsts, gaps=gaps)
    periods = [p for p in revenue.forecast_periods(rc, months) if p.kind == "month"]
    return revenue.rehearsal_errors(past.table, period_actuals(conn, periods, rc, cutoff), periods, rc)


def refit(conn: duckdb.DuckDBPyConnection, model: btyd.BTYDModel, cutoff: date, firsts: pd.DataFrame,
          max_fit_customers: int | None = None) -> tuple[revenue.SeasonalIndex, revenue.Rehearsal]:
    """(seasonal index of ``model`` at ``cutoff``, rehearsal errors) as ``revenue.seasonal_index`` and
    ``revenue.rehearse`` give them on every order up to ``cutoff``; ``firsts``: ``first_orders`` at it."""
    days = seasonality.purchase_days_sql(conn, cutoff)
    season = seasonality.seasonal_index_from_days(days, model, cutoff)
    return season, rehearse(conn, cutoff, days, firsts, max_fit_customers=max_fit_customers)
